"""Writing files atomically: a temporary file beside the target, flushed, then renamed over it.

A reader sees the old file or the complete new one, never a partial write: ``os.replace`` is
atomic when source and target are on the same file system (hence the temporary file in the same
folder). A temporary file left by a killed process (``.partial-*`` beside the target) is removed by
the next write to the same folder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

PARTIAL_PREFIX = ".partial-"


def write_atomically(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Call ``write(temporary_path)``, then move the result onto ``path`` (whose folder must exist).

    ``write`` must create the file at the path it is given. Nothing half-written remains, whether
    ``write`` fails or the process is interrupted (the next write here removes stale temporaries)."""
    path = Path(path)
    folder = path.resolve().parent
    remove_stale_partials(folder)
    handle, name = tempfile.mkstemp(dir=folder, prefix=f"{PARTIAL_PREFIX}{os.getpid()}-", suffix=path.suffix)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def save_atomically(obj, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` through :func:`write_atomically`."""
    write_atomically(path, lambda temporary: torch.save(obj, temporary))


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """UTF-8 ``text`` to ``path`` through :func:`write_atomically`."""
    write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def remove_stale_partials(folder: str | os.PathLike) -> None:
    """Remove temporaries in ``folder`` left by processes that no longer run (killed mid-write)."""
    for partial in Path(folder).glob(f"{PARTIAL_PREFIX}*"):
        owner = partial.name[len(PARTIAL_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not _process_alive(int(owner)):
            partial.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
