"""The benchmark shapes of DESIGN §6 (D = 512), a forward-only search shape and a tiny smoke shape."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    name: str
    batch: int
    classes: int
    dim: int
    about: str

    def describe(self) -> str:
        return f"{self.name} (B={self.batch:,}, C={self.classes:,}, D={self.dim})"


SHAPES = {
    shape.name: shape
    for shape in (
        # Not a multiple of any block size, so that tails are exercised; seconds on a CPU.
        Shape("tiny", 37, 1_031, 48, "smoke tests"),
        Shape("S", 512, 10_572, 512, "CASIA-WebFace"),
        Shape("L", 512, 85_742, 512, "MS1MV2"),
        Shape("XL", 512, 2_059_906, 512, "WebFace42M on one GPU"),
        Shape("Shard", 4_096, 257_489, 512, "WebFace42M over 8 ranks, one rank's work"),
        Shape("Stats", 4_096, 2_000_000, 512, "class_stats against a flat top-2 search"),
        Shape("Stats-CPU", 4_096, 1_000_000, 512, "class_stats against a flat top-2 search on a CPU"),
    )
}


def get_shape(name: str) -> Shape:
    try:
        return SHAPES[name]
    except KeyError:
        raise ValueError(f"unknown shape {name!r}; known: {', '.join(SHAPES)}") from None
