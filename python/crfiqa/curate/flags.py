"""The three flags, their rules (written into the report) and their thresholds (options).

* likely mislabeled: NNCCS − CCS > ``mislabel_margin`` (default 0: the nearest other class center
  is closer than the sample's own);
* duplicate identities: two classes, one the other's nearest center, whose centers' cosine is at
  least ``duplicate_cosine``; supported by the samples of either class whose nearest other class is
  the other one;
* low quality: the ``low_quality_fraction`` of samples with the lowest predicted quality.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .centers import CenterNeighbors
from .stats import SampleStats

MISLABELED, DUPLICATE, LOW_QUALITY = "likely_mislabeled", "duplicate_identity", "low_quality"


@dataclass(frozen=True)
class FlagSettings:
    mislabel_margin: float = 0.0
    duplicate_cosine: float = 0.3
    low_quality_fraction: float = 0.05

    def __post_init__(self) -> None:
        if not -2.0 <= self.mislabel_margin <= 2.0:
            raise ValueError(f"--mislabel-margin must lie in [-2, 2], got {self.mislabel_margin}")
        if not -1.0 <= self.duplicate_cosine <= 1.0:
            raise ValueError(f"--duplicate-cosine must lie in [-1, 1], got {self.duplicate_cosine}")
        if not 0.0 <= self.low_quality_fraction <= 1.0:
            raise ValueError(f"--low-quality-fraction must lie in [0, 1], got {self.low_quality_fraction}")

    def rules(self) -> dict[str, str]:
        return {
            MISLABELED: f"NNCCS - CCS > {self.mislabel_margin:g}: the nearest other class center is closer than the "
                        "sample's own (CCS: cosine to its own class center; NNCCS: to the nearest other one)",
            DUPLICATE: f"two classes, one the other's nearest center, whose centers' cosine is >= "
                       f"{self.duplicate_cosine:g}; supporting samples: those of either class whose nearest other "
                       "class is the other one",
            LOW_QUALITY: f"among the {self.low_quality_fraction:.1%} of samples with the lowest predicted quality",
        }

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DuplicatePair:
    first: int
    second: int
    cosine: float
    flagged: bool
    supporting: int  # samples of either class whose nearest other class is the other one
    supporting_mislabeled: int  # … of which are closer to the other center than to their own


@dataclass
class Flags:
    mislabeled: np.ndarray  # bool per sample
    low_quality: np.ndarray  # bool per sample
    duplicate: np.ndarray  # bool per sample: supports a flagged duplicate pair
    suspicion: np.ndarray  # NNCCS − CCS per sample: the mislabel ranking, highest first
    pairs: list[DuplicatePair]  # every mutual-or-one-way nearest pair, highest cosine first
    duplicate_class: np.ndarray  # bool per class: in a flagged pair
    low_quality_threshold: float


def candidate_pairs(neighbors: CenterNeighbors) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unordered pairs ``(a < b)`` where one is the other's nearest center, highest cosine first."""
    classes = np.arange(len(neighbors.nearest_class))
    found = neighbors.nearest_class >= 0
    a = np.minimum(classes[found], neighbors.nearest_class[found])
    b = np.maximum(classes[found], neighbors.nearest_class[found])
    cosine = neighbors.cosine[found]
    codes, first = np.unique(a * len(classes) + b, return_index=True)
    a, b, cosine = a[first], b[first], cosine[first]
    order = np.lexsort((a, -cosine.astype(np.float64)))
    return a[order], b[order], cosine[order]


def compute_flags(samples: SampleStats, neighbors: CenterNeighbors, settings: FlagSettings,
                  max_pairs: int = 1000) -> Flags:
    num_classes = len(neighbors.nearest_class)
    suspicion = samples.nnccs.astype(np.float64) - samples.ccs.astype(np.float64)
    mislabeled = suspicion > settings.mislabel_margin

    low_count = int(round(settings.low_quality_fraction * len(samples)))
    low_quality = np.zeros(len(samples), bool)
    threshold = float("nan")
    if low_count:
        order = np.lexsort((samples.index, samples.quality))[:low_count]
        low_quality[order] = True
        threshold = float(samples.quality[order[-1]])

    a, b, cosine = candidate_pairs(neighbors)
    flagged = cosine >= settings.duplicate_cosine
    # Supporting samples: label in the pair and nearest other class the other member.
    low, high = np.minimum(samples.label, samples.nearest_class), np.maximum(samples.label, samples.nearest_class)
    sample_code = low * num_classes + high
    pair_code = a * num_classes + b
    in_flagged = np.isin(sample_code, pair_code[flagged])
    keep = min(len(a), max(max_pairs, int(flagged.sum())))
    support, support_mis = {}, {}
    if keep:
        kept_codes = pair_code[:keep]
        member = np.isin(sample_code, kept_codes)
        codes, counts = np.unique(sample_code[member], return_counts=True)
        codes_mis, counts_mis = np.unique(sample_code[member & mislabeled], return_counts=True)
        support = dict(zip(codes.tolist(), counts.tolist()))
        support_mis = dict(zip(codes_mis.tolist(), counts_mis.tolist()))
    pairs = [
        DuplicatePair(int(a[i]), int(b[i]), float(cosine[i]), bool(flagged[i]),
                      support.get(int(pair_code[i]), 0), support_mis.get(int(pair_code[i]), 0))
        for i in range(keep)
    ]
    duplicate_class = np.zeros(num_classes, bool)
    duplicate_class[a[flagged]] = True
    duplicate_class[b[flagged]] = True
    return Flags(mislabeled, low_quality, in_flagged, suspicion, pairs, duplicate_class, threshold)
