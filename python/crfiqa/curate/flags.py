"""The three flags, their rules (written into the report) and their thresholds (options).

* **duplicate identities** — two classes whose samples take each other as their nearest other
  class: at least ``duplicate_share`` of each class's samples have the other one as nearest class
  (the *mutual nearest share*: the smaller of the two shares), or whose centers' cosine is at least
  ``duplicate_cosine``. Measured on the demo digits with one identity split in two labels, the
  margin softmax pushes the two halves' centers apart (their cosine was not even each other's
  nearest), while 76 % of each half's samples had the other half as nearest class (next pair 26 %):
  the samples carry the signal, the centers alone do not. The list is ranked by mutual nearest
  share, then center cosine; candidates are every pair whose samples point at each other and every
  class with its nearest center. Supporting samples: those of either class whose nearest other
  class is the other one.
* **likely mislabeled** — NNCCS − CCS > ``mislabel_margin`` (default 0: the nearest other class
  center is closer than the sample's own), unless that nearer class is a flagged duplicate of its
  own (the sample then supports the duplicate pair instead);
* **low quality** — the ``low_quality_fraction`` of samples with the lowest predicted quality.

Memory: O(samples + classes); pairs are counted from the samples' (label, nearest class) codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .centers import CenterNeighbors
from .settings import FlagSettings
from .stats import SampleStats


@dataclass
class DuplicatePair:
    first: int
    second: int
    share: float  # mutual nearest share: min over the two classes of the share of samples nearest the other
    cosine: float  # of the two centers
    flagged: bool
    supporting: int  # samples of either class whose nearest other class is the other one
    supporting_mislabeled: int  # … of which are closer to the other center than to their own


@dataclass
class Flags:
    mislabeled: np.ndarray  # bool per sample
    low_quality: np.ndarray  # bool per sample
    duplicate: np.ndarray  # bool per sample: supports a flagged duplicate pair
    suspicion: np.ndarray  # NNCCS − CCS per sample: the mislabel ranking, highest first
    pairs: list[DuplicatePair]  # candidate pairs, most likely duplicates first
    duplicate_class: np.ndarray  # bool per class: in a flagged pair
    low_quality_threshold: float


def _center_cosine(centers: torch.Tensor, a: np.ndarray, b: np.ndarray, block: int = 65_536) -> np.ndarray:
    out = np.empty(len(a), np.float32)
    for start in range(0, len(a), block):
        rows = slice(start, start + block)
        first = torch.nn.functional.normalize(centers[torch.as_tensor(a[rows])].float(), dim=1, eps=1e-12)
        second = torch.nn.functional.normalize(centers[torch.as_tensor(b[rows])].float(), dim=1, eps=1e-12)
        out[rows] = (first * second).sum(1).clamp(-1.0, 1.0).cpu().numpy()
    return out


def _directed_counts(samples: SampleStats, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(codes label·C + nearest, counts)`` over the samples, sorted by code."""
    return np.unique(samples.label * num_classes + samples.nearest_class, return_counts=True)


def _lookup(codes: np.ndarray, counts: np.ndarray, query: np.ndarray) -> np.ndarray:
    position = np.clip(np.searchsorted(codes, query), 0, max(len(codes) - 1, 0))
    found = (codes[position] == query) if len(codes) else np.zeros(len(query), bool)
    return np.where(found, counts[position] if len(codes) else 0, 0)


def candidate_pairs(samples: SampleStats, neighbors: CenterNeighbors, centers: torch.Tensor, class_count: np.ndarray):
    """Arrays ``(a, b, share, cosine, n_ab, n_ba)`` over the candidate pairs ``a < b``, best first."""
    num_classes = len(neighbors.nearest_class)
    codes, counts = _directed_counts(samples, num_classes)
    source, target = codes // num_classes, codes % num_classes
    # Candidates: pairs whose samples point both ways, and each class with its nearest center.
    reverse = _lookup(codes, counts, target * num_classes + source)
    both = (reverse > 0) & (source < target)
    classes = np.flatnonzero(neighbors.nearest_class >= 0)
    near = neighbors.nearest_class[classes]
    a = np.concatenate([source[both], np.minimum(classes, near)])
    b = np.concatenate([target[both], np.maximum(classes, near)])
    unique = np.unique(a * num_classes + b)
    a, b = unique // num_classes, unique % num_classes
    n_ab = _lookup(codes, counts, a * num_classes + b)
    n_ba = _lookup(codes, counts, b * num_classes + a)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.minimum(n_ab / np.maximum(class_count[a], 1), n_ba / np.maximum(class_count[b], 1))
    cosine = _center_cosine(centers, a, b) if len(a) else np.zeros(0, np.float32)
    order = np.lexsort((b, a, -cosine.astype(np.float64), -share))
    return a[order], b[order], share[order], cosine[order], n_ab[order], n_ba[order]


def compute_flags(
    samples: SampleStats,
    neighbors: CenterNeighbors,
    centers: torch.Tensor,
    settings: FlagSettings,
    max_pairs: int = 1000,
) -> Flags:
    num_classes = len(neighbors.nearest_class)
    class_count = np.bincount(samples.label, minlength=num_classes)
    a, b, share, cosine, n_ab, n_ba = candidate_pairs(samples, neighbors, centers, class_count)
    flagged = (share >= settings.duplicate_share) | (cosine >= settings.duplicate_cosine)
    low, high = np.minimum(samples.label, samples.nearest_class), np.maximum(samples.label, samples.nearest_class)
    sample_code = low * num_classes + high
    pair_code = a * num_classes + b
    duplicate = np.isin(sample_code, pair_code[flagged])

    suspicion = samples.nnccs.astype(np.float64) - samples.ccs.astype(np.float64)
    mislabeled = (suspicion > settings.mislabel_margin) & ~duplicate

    low_count = int(round(settings.low_quality_fraction * len(samples)))
    low_quality = np.zeros(len(samples), bool)
    threshold = float("nan")
    if low_count:
        order = np.lexsort((samples.index, samples.quality))[:low_count]
        low_quality[order] = True
        threshold = float(samples.quality[order[-1]])

    keep = min(len(a), max(max_pairs, int(flagged.sum())))
    closer = suspicion > settings.mislabel_margin
    codes_closer, counts_closer = np.unique(sample_code[closer], return_counts=True)
    closer_counts = _lookup(codes_closer, counts_closer, pair_code[:keep])
    pairs = [
        DuplicatePair(
            int(a[i]),
            int(b[i]),
            float(share[i]),
            float(cosine[i]),
            bool(flagged[i]),
            int(n_ab[i] + n_ba[i]),
            int(closer_counts[i]),
        )
        for i in range(keep)
    ]
    duplicate_class = np.zeros(num_classes, bool)
    duplicate_class[a[flagged]] = True
    duplicate_class[b[flagged]] = True
    return Flags(mislabeled, low_quality, duplicate, suspicion, pairs, duplicate_class, threshold)
