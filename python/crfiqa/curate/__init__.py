"""``crfiqa curate``: a dataset report from CCS and NNCCS — label noise, duplicate identities, low quality.

    crfiqa curate RUN/checkpoint.pt DATA --output report/

Built on ``crfiqa_kernels.class_stats`` (the forward-only pass over every class center, never
batch × classes); the centers' nearest neighbours through it (exact) or faiss (``crfiqa_kernels.search``).
"""

from __future__ import annotations

import importlib

# Names and the modules that define them, imported on first use: ``crfiqa curate --help`` needs
# only :mod:`.cli` and :mod:`.settings`, not torch.
_HOMES = {
    "CenterNeighbors": "centers",
    "ClassTotals": "stats",
    "CurateError": "errors",
    "CurateModel": "model",
    "CurateOptions": "run",
    "FlagSettings": "settings",
    "LabelledListDataset": "data",
    "REPORT_FILES": "run",
    "SampleStats": "stats",
    "compute_flags": "flags",
    "curate": "run",
    "load_curate_model": "model",
    "nearest_centers": "centers",
    "open_labelled_data": "data",
    "sample_key": "keys",
    "sample_stats": "stats",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
