"""Alignment: the similarity transform that takes a face's five landmarks onto the template, and
the crop it warps. The same function serves ``crfiqa align`` and ``crfiqa score --align``."""

from __future__ import annotations

import numpy as np

from .template import template


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The ``(2, 3)`` matrix ``[[a, −b, tx], [b, a, ty]]`` of the rotation, uniform scale and
    translation that maps the points ``source`` (N, 2) onto ``target`` (N, 2) with the least sum of
    squared distances, every point weighted alike (no outlier rejection).

    Derivation. Write the map as ``q ≈ M p + t`` with ``M = [[a, −b], [b, a]]`` (``a = s·cos θ``,
    ``b = s·sin θ``): every rotation with uniform scale, never a reflection, and linear in
    ``(a, b, t)``. For fixed ``M`` the best ``t`` zeroes the mean residual: ``t = q̄ − M p̄``. With
    centred points ``p̃ = p − p̄``, ``q̃ = q − q̄`` the cost is ``Σ |a p̃ + b J p̃ − q̃|²`` where
    ``J p̃ = (−p̃_y, p̃_x)`` is ``p̃`` turned by 90°: orthogonal to ``p̃``, of the same length. Setting
    the derivatives in ``a`` and ``b`` to zero, the cross terms vanish (``p̃ · J p̃ = 0``) and
    ``a = Σ p̃·q̃ / Σ|p̃|²``, ``b = Σ (p̃_x q̃_y − p̃_y q̃_x) / Σ|p̃|²``: Umeyama's solution without
    reflection, in closed form.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or len(source) < 2:
        raise ValueError(f"need two matching (N ≥ 2, 2) point sets, got {source.shape} and {target.shape}")
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    p, q = source - source_mean, target - target_mean
    spread = float((p**2).sum())
    if spread == 0.0:
        raise ValueError("the source points coincide: no transform is defined")
    a = float((p * q).sum()) / spread
    b = float((p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]).sum()) / spread
    rotation = np.array([[a, -b], [b, a]])
    return np.hstack([rotation, (target_mean - rotation @ source_mean)[:, None]])


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``points`` (N, 2) mapped by a ``(2, 3)`` affine ``matrix``."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """``(crop, matrix)``: the ``size × size`` crop of ``image`` (H, W, 3 uint8) whose five
    ``landmarks`` (5, 2) land on the ArcFace template scaled to ``size``, bilinear, black outside the
    photo; ``matrix`` maps the photo's pixel coordinates to the crop's."""
    import cv2

    matrix = similarity_transform(landmarks, template(size))
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    return crop, matrix
