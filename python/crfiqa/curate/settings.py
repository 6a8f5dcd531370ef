"""The curate options' settings and names, light to import (the command's ``--help`` reads them):
the flags' names, thresholds and rules (see :mod:`.flags` for how they are computed) and the methods
of the class-center neighbour search (see :mod:`.centers`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

METHODS = ("auto", "exact", "faiss-flat", "faiss-ivf")
MISLABELED, DUPLICATE, LOW_QUALITY = "likely_mislabeled", "duplicate_identity", "low_quality"


@dataclass(frozen=True)
class FlagSettings:
    mislabel_margin: float = 0.0
    duplicate_share: float = 0.5
    duplicate_cosine: float = 0.5
    low_quality_fraction: float = 0.05

    def __post_init__(self) -> None:
        if not -2.0 <= self.mislabel_margin <= 2.0:
            raise ValueError(f"--mislabel-margin must lie in [-2, 2], got {self.mislabel_margin}")
        if not 0.0 < self.duplicate_share <= 1.0:
            raise ValueError(f"--duplicate-share must lie in (0, 1], got {self.duplicate_share}")
        if not -1.0 <= self.duplicate_cosine <= 1.0:
            raise ValueError(f"--duplicate-cosine must lie in [-1, 1], got {self.duplicate_cosine}")
        if not 0.0 <= self.low_quality_fraction <= 1.0:
            raise ValueError(f"--low-quality-fraction must lie in [0, 1], got {self.low_quality_fraction}")

    def rules(self) -> dict[str, str]:
        return {
            MISLABELED: f"NNCCS - CCS > {self.mislabel_margin:g} (the nearest other class center is closer than "
            "the sample's own; CCS: cosine to its own class center, NNCCS: to the nearest other one), "
            "unless that class is a flagged duplicate of its own",
            DUPLICATE: f"two classes where at least {self.duplicate_share:.0%} of each class's samples have the other "
            f"as nearest other class (mutual nearest share), or whose centers' cosine is >= "
            f"{self.duplicate_cosine:g}; supporting samples: those of either class whose nearest other "
            "class is the other one; ranked by mutual nearest share, then center cosine",
            LOW_QUALITY: f"among the {self.low_quality_fraction:.1%} of samples with the lowest predicted quality",
        }

    def to_dict(self) -> dict:
        return asdict(self)
