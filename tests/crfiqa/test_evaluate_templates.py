"""Quality-weighted IJB-C-style templates and TAR at FAR."""

import numpy as np
import pytest

from crfiqa.evaluate import (
    quality_weights,
    tar_at_far,
    template_features,
    template_similarity,
)


def test_quality_weights_are_min_max_normalized():
    np.testing.assert_allclose(quality_weights([2.0, 4.0, 3.0]), [0.0, 1.0, 0.5])
    np.testing.assert_array_equal(quality_weights([3.0, 3.0]), [1.0, 1.0])


def test_media_mean_then_sum_then_normalize():
    features = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 3.0], [5.0, 1.0], [0.0, 2.0]])
    templates = np.array([7, 7, 7, 3, 3])
    medias = np.array([0, 0, 1, 5, 5])
    quality = np.array([1.0, 3.0, 2.0, 0.0, 3.0])  # weights 1/3, 1, 2/3, 0, 1
    result = template_features(features, templates, medias, quality)
    np.testing.assert_array_equal(result.ids, [3, 7])
    seven = (features[0] / 3 + features[1]) / 2 + features[2] * 2 / 3
    three = (features[3] * 0 + features[4]) / 2
    np.testing.assert_allclose(result.features[1], seven / np.linalg.norm(seven))
    np.testing.assert_allclose(result.features[0], three / np.linalg.norm(three))
    unweighted = template_features(features, templates, medias)
    expected = (features[3] + features[4]) / 2
    np.testing.assert_allclose(unweighted.features[0], expected / np.linalg.norm(expected))


def test_template_of_only_zero_weights_scores_zero():
    features = np.array([[1.0, 0.0], [0.0, 1.0]])
    result = template_features(features, np.array([1, 2]), np.array([0, 0]), np.array([0.0, 1.0]))
    np.testing.assert_array_equal(result.features[0], [0.0, 0.0])
    np.testing.assert_array_equal(template_similarity(result, [1, 2], [2, 2]), [0.0, 1.0])


def test_tar_at_far_hand_computed():
    mated = np.array([1, 1, 0, 0], dtype=bool)
    scores = np.array([0.9, 0.4, 0.5, 0.1])
    # ROC: (0, 0.5) at 0.9, (0.5, 0.5) at 0.5, (0.5, 1) at 0.4, (1, 1) at 0.1.
    assert tar_at_far(mated, scores, fars=(1e-3, 0.5, 0.9)) == {1e-3: 0.5, 0.5: 1.0, 0.9: 1.0}


def test_synthetic_templates_verify_well_and_quality_weighting_helps():
    rng = np.random.default_rng(0)
    identities, templates_per_identity, images = 40, 2, 6
    template_ids, medias, features, quality = [], [], [], []
    centers = rng.standard_normal((identities, 32))
    for identity in range(identities):
        for t in range(templates_per_identity):
            for image in range(images):
                good = rng.random() < 0.5
                noise = 0.3 if good else 3.0
                features.append(centers[identity] + noise * rng.standard_normal(32))
                quality.append(1.0 if good else 0.0)
                template_ids.append(identity * templates_per_identity + t)
                medias.append(image // 2)
    features, quality = np.array(features), np.array(quality) + 0.01 * rng.random(len(quality))
    template_ids, medias = np.array(template_ids), np.array(medias)
    first = np.arange(0, identities * templates_per_identity, templates_per_identity)
    mated_pairs = np.stack([first, first + 1], 1)
    other = (first[:, None] + templates_per_identity * np.arange(1, identities)[None, :]) % (identities * 2)
    non_mated = np.stack([np.repeat(first, identities - 1), other.reshape(-1)], 1)
    pairs = np.concatenate([mated_pairs, non_mated])
    mated = np.arange(len(pairs)) < identities

    weighted = template_features(features, template_ids, medias, quality)
    plain = template_features(features, template_ids, medias)
    tar_weighted = tar_at_far(mated, template_similarity(weighted, pairs[:, 0], pairs[:, 1]), fars=(1e-3,))
    tar_plain = tar_at_far(mated, template_similarity(plain, pairs[:, 0], pairs[:, 1]), fars=(1e-3,))
    assert tar_weighted[1e-3] == 1.0
    assert tar_plain[1e-3] < tar_weighted[1e-3]


def test_bad_arguments():
    with pytest.raises(ValueError, match="templates must be"):
        template_features(np.zeros((2, 3)), np.array([0.5, 1.0]), np.array([0, 0]))
    with pytest.raises(ValueError, match="quality must have one score per image"):
        template_features(np.zeros((2, 3)), np.array([0, 1]), np.array([0, 0]), quality=[1.0, 2.0, 3.0])
    result = template_features(np.ones((2, 3)), np.array([0, 1]), np.array([0, 0]))
    with pytest.raises(ValueError, match="unknown template ids"):
        template_similarity(result, [0], [5])
    with pytest.raises(ValueError, match="both mated and non-mated"):
        tar_at_far([1, 1], [0.2, 0.3])
