"""What a training run leaves in its output folder, and moving an old run aside (never deleting it)."""

from __future__ import annotations

import os
from pathlib import Path

RUN_FILES = ("checkpoint.pt", "checkpoint-rank*.pt", "backbone.pth")  # a folder with one of these holds a run
RUN_EXTRAS = ("train.log", "tensorboard")  # moved aside with the run


def run_files(folder: str | os.PathLike) -> list[Path]:
    """The checkpoints and backbone of a run in ``folder`` (empty when it holds none)."""
    folder = Path(folder)
    return sorted(path for pattern in RUN_FILES for path in folder.glob(pattern) if path.is_file())


def move_run_aside(folder: str | os.PathLike) -> Path:
    """Move the run in ``folder`` (its files, log and TensorBoard events) into ``folder/previous-N``."""
    folder = Path(folder)
    number = 1
    while (folder / f"previous-{number}").exists():
        number += 1
    aside = folder / f"previous-{number}"
    aside.mkdir()
    for path in run_files(folder) + [folder / name for name in RUN_EXTRAS if (folder / name).exists()]:
        os.replace(path, aside / path.name)
    return aside
