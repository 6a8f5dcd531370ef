"""Image degradations at a given strength u ∈ [0, 1] (0 = untouched, 1 = strongest).

They act on grayscale float images in [0, 1] and are drawn from a numpy Generator, so a seed fixes
every image. The strengths span "barely visible" to "hard to recognize" for 32×32 digits.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

KINDS = ("blur", "noise", "occlusion", "low_contrast")

MAX_BLUR_SIGMA = 3.0  # pixels, at 32×32
MAX_NOISE_STD = 0.6  # gray levels, images in [0, 1]
MAX_OCCLUDED_SIDE = 0.75  # of the image side
MIN_CONTRAST = 0.06  # contrast factor at u = 1


def blur(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    return gaussian_filter(image, sigma=MAX_BLUR_SIGMA * strength) if strength > 0 else image.copy()


def noise(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(image + rng.normal(0.0, MAX_NOISE_STD * strength, image.shape), 0.0, 1.0)


def occlusion(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A square of side ``strength · 0.75 · image side`` at a random place, filled with a random gray."""
    out = image.copy()
    side = int(round(MAX_OCCLUDED_SIDE * strength * image.shape[0]))
    if side > 0:
        top = rng.integers(0, image.shape[0] - side + 1)
        left = rng.integers(0, image.shape[1] - side + 1)
        out[top : top + side, left : left + side] = rng.uniform(0.0, 1.0)
    return out


def low_contrast(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Contrast scaled down to ``1 − (1 − 0.06)·strength`` around a random mid-gray."""
    factor = 1.0 - (1.0 - MIN_CONTRAST) * strength
    center = rng.uniform(0.3, 0.7)
    return center + (image - image.mean()) * factor


DEGRADATIONS = {"blur": blur, "noise": noise, "occlusion": occlusion, "low_contrast": low_contrast}


def degrade(image: np.ndarray, kind: str, strength: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` degraded by ``kind`` at ``strength``, quantized to 8 bits like a stored image."""
    if kind not in DEGRADATIONS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must lie in [0, 1], got {strength}")
    out = DEGRADATIONS[kind](image, strength, rng)
    return np.round(np.clip(out, 0.0, 1.0) * 255.0) / 255.0
