"""Quality-weighted templates and template-to-template (1:1) verification, IJB-C style.

As the CR-FIQA paper's IJB-C evaluation does it: each image feature is weighted by its quality,
min–max normalized over all images to ``[0, 1]``; features of the same media (video or photo) in a
template are averaged, the media features summed, and the result L2-normalized. Two templates
compare by cosine similarity. TAR at FAR is read off the ROC (scikit-learn's ``roc_curve``) at the
point whose FAR is nearest the target, the highest TAR among equally near points.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sklearn.metrics import roc_curve

from .validation import as_mated, as_scores

DEFAULT_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


class TemplateFeatures(NamedTuple):
    """One L2-normalized feature per template, ``features[i]`` for template id ``ids[i]`` (ascending)."""

    ids: np.ndarray
    features: np.ndarray


def quality_weights(quality) -> np.ndarray:
    """Quality min–max normalized to ``[0, 1]``; all ones when every quality is equal."""
    quality = as_scores("quality", quality)
    low, high = quality.min(), quality.max()
    if high == low:
        return np.ones_like(quality)
    return (quality - low) / (high - low)


def template_features(features, templates, medias, quality=None) -> TemplateFeatures:
    """Aggregate image ``features`` (N, D) into templates: quality-weighted media mean, then sum.

    ``features`` as the network gives them (with the flip test: the sum of both), not normalized:
    their norms weigh in as in the paper's evaluation.
    ``templates``/``medias``: integer ids per image. Without ``quality`` every image weighs 1. A
    template whose weights are all zero (only the lowest-quality image) gets a zero feature, whose
    cosine with anything is 0.
    """
    features = np.asarray(features, dtype=np.float64)
    templates, medias = np.asarray(templates), np.asarray(medias)
    if features.ndim != 2 or not np.isfinite(features).all():
        raise ValueError(f"features must be a finite (N, D) array, got shape {features.shape}")
    for name, ids in (("templates", templates), ("medias", medias)):
        if ids.shape != (features.shape[0],) or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{name} must be {features.shape[0]} integer ids, got {ids.dtype} {ids.shape}")
    if quality is not None:
        weights = quality_weights(quality)
        if weights.shape != (features.shape[0],):
            raise ValueError(f"quality must have one score per image, got {weights.shape}")
        features = features * weights[:, None]

    # Media level: mean over the images of each (template, media).
    media_keys, media_of_image = np.unique(np.stack([templates, medias], axis=1), axis=0, return_inverse=True)
    media_of_image = media_of_image.reshape(-1)
    media_sum = np.zeros((len(media_keys), features.shape[1]))
    np.add.at(media_sum, media_of_image, features)
    media_mean = media_sum / np.bincount(media_of_image)[:, None]
    # Template level: sum over its medias, then L2-normalize.
    ids, template_of_media = np.unique(media_keys[:, 0], return_inverse=True)
    template_sum = np.zeros((len(ids), features.shape[1]))
    np.add.at(template_sum, template_of_media.reshape(-1), media_mean)
    norms = np.linalg.norm(template_sum, axis=1, keepdims=True)
    return TemplateFeatures(ids, template_sum / np.where(norms > 0, norms, 1.0))


def template_similarity(templates: TemplateFeatures, first, second, *, chunk: int = 100_000) -> np.ndarray:
    """Cosine similarity of template pairs ``(first[i], second[i])`` given by template id."""
    first, second = np.asarray(first), np.asarray(second)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(f"first and second must be 1-D of one length, got {first.shape} and {second.shape}")
    rows = []
    for ids in (first, second):
        position = np.searchsorted(templates.ids, ids)
        position = np.clip(position, 0, len(templates.ids) - 1)
        unknown = templates.ids[position] != ids
        if unknown.any():
            raise ValueError(f"unknown template ids, e.g. {ids[unknown][:5].tolist()}")
        rows.append(position)
    scores = np.empty(len(first))
    for start in range(0, len(first), chunk):
        part = slice(start, start + chunk)
        scores[part] = np.einsum("ij,ij->i", templates.features[rows[0][part]], templates.features[rows[1][part]])
    return scores


def tar_at_far(mated, scores, fars=DEFAULT_FARS) -> dict[float, float]:
    """True accept rate at each false accept rate of ``fars`` (nearest ROC point, highest TAR on ties)."""
    mated = as_mated("mated", mated)
    scores = as_scores("scores", scores)
    if len(mated) != len(scores):
        raise ValueError(f"mated and scores differ in length: {len(mated)} vs {len(scores)}")
    if mated.all() or not mated.any():
        raise ValueError("mated must hold both mated and non-mated pairs")
    false_accept, true_accept, _ = roc_curve(mated, scores)
    result = {}
    for far in fars:
        distance = np.abs(false_accept - far)
        nearest = np.flatnonzero(distance == distance.min())
        result[float(far)] = float(true_accept[nearest].max())
    return result
