"""``crfiqa curate``: a dataset report from CCS and NNCCS — label noise, duplicate identities, low quality.

    crfiqa curate RUN/checkpoint.pt DATA --output report/

Built on ``crfiqa_kernels.class_stats`` (the forward-only pass over every class center, never
batch × classes); the centers' nearest neighbours through it (exact) or faiss (``crfiqa_kernels.search``).
"""
from .centers import CenterNeighbors, nearest_centers
from .data import LabelledListDataset, open_labelled_data
from .errors import CurateError
from .flags import FlagSettings, compute_flags
from .keys import sample_key
from .model import CurateModel, load_curate_model
from .run import REPORT_FILES, CurateOptions, curate
from .stats import ClassTotals, SampleStats, sample_stats

__all__ = [
    "REPORT_FILES",
    "CenterNeighbors",
    "ClassTotals",
    "CurateError",
    "CurateModel",
    "CurateOptions",
    "FlagSettings",
    "LabelledListDataset",
    "SampleStats",
    "compute_flags",
    "curate",
    "load_curate_model",
    "nearest_centers",
    "open_labelled_data",
    "sample_key",
    "sample_stats",
]
