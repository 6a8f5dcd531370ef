"""Degraded handwritten digits: the demo's dataset, built from scikit-learn's bundled copy of the
UCI digits (1,797 images of 8×8 pixels, 10 classes), so that nothing is downloaded.

Every image is upscaled to ``size × size`` and degraded by one of the four degradations at a
strength drawn uniformly from [0, 1]; kind and strength are recorded. The digit plays the identity.
Training and held-out images come from disjoint source images (a stratified split).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from ..data import normalize
from .degradations import KINDS, degrade

NUM_CLASSES = 10


@dataclass
class DegradedDigits(torch.utils.data.Dataset):
    """Items ``(normalized (3, size, size) tensor, digit)``; ``strength``/``kind``/``source`` per image."""

    images: torch.Tensor  # (N, 3, size, size), normalized to [-1, 1]
    labels: torch.Tensor  # (N,) int64
    strength: np.ndarray  # (N,) float in [0, 1]
    kind: np.ndarray  # (N,) index into KINDS
    source: np.ndarray  # (N,) index of the source digit image

    num_identities = NUM_CLASSES

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], int(self.labels[index])


def _upscaled_digits(size: int) -> tuple[np.ndarray, np.ndarray]:
    digits = load_digits()
    small = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
    large = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    return large[:, 0].clamp(0.0, 1.0).numpy(), digits.target.astype(np.int64)


def _degraded(images, labels, sources, copies, rng) -> DegradedDigits:
    count = len(sources) * copies
    source = np.repeat(sources, copies)
    strength = rng.uniform(0.0, 1.0, count)
    kind = rng.integers(0, len(KINDS), count)
    out = np.stack([degrade(images[s], KINDS[k], u, rng) for s, k, u in zip(source, kind, strength, strict=True)])
    pixels = torch.from_numpy(out.astype(np.float32) * 255.0)[:, None].expand(-1, 3, -1, -1)
    return DegradedDigits(normalize(pixels).contiguous(), torch.from_numpy(labels[source]), strength, kind, source)


def make_digits(
    size: int = 32, *, train_copies: int = 4, test_copies: int = 1, test_fraction: float = 0.3, seed: int = 0
) -> tuple[DegradedDigits, DegradedDigits]:
    """``(train, held_out)``: each source image ``*_copies`` times, each copy freshly degraded."""
    images, labels = _upscaled_digits(size)
    train_sources, test_sources = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=seed
    )
    rng = np.random.default_rng(seed)
    train = _degraded(images, labels, np.sort(train_sources), train_copies, rng)
    held_out = _degraded(images, labels, np.sort(test_sources), test_copies, rng)
    return train, held_out
