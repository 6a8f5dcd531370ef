"""Atomic checkpoint files: written to a temporary file beside the target, then renamed over it.

A reader never sees a half-written checkpoint: ``os.replace`` is atomic on POSIX and Windows
when source and target are on the same file system (hence the temporary file in the same folder).
Checkpoints hold only tensors and plain Python values, so they load with ``weights_only=True``.
"""

from __future__ import annotations

import os

import torch

from crfiqa_kernels.atomic_files import save_atomically


def save_atomic(payload: dict, path: str | os.PathLike) -> None:
    """``torch.save(payload, path)`` through a temporary file and ``os.replace``; creates the folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_atomically(payload, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint written by :func:`save_atomic`, loaded with ``weights_only=True``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict):
        raise ValueError(f"{path} does not hold a checkpoint dict")
    return payload
