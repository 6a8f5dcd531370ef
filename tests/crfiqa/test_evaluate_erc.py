"""ERC (CR-FIQA protocol): a hand-computed step, a brute-force oracle, undefined steps, the AUC."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crfiqa.evaluate import ERC_DISCARD_FRACTIONS, erc_auc, erc_curve


def test_discard_fractions_are_0_to_095():
    np.testing.assert_allclose(ERC_DISCARD_FRACTIONS, np.linspace(0, 0.95, 20))


def test_hand_computed_first_step():
    similarity = np.array([0.2, 0.9, 0.8, 0.7, 0.1, 0.3, 0.4, 0.6])
    mated = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    quality = np.arange(8.0)
    curve = erc_curve(similarity, mated, quality, fmr=0.25)
    # FMR 1/4 only at threshold 0.6 (one non-mated score ≥ 0.6); mated 0.2 ≤ 0.6 fails: FNMR 1/4.
    assert (curve.thresholds[0], curve.fmr[0], curve.fnmr[0]) == (0.6, 0.25, 0.25)
    # int(0.05 · 8) = 0: the second step discards nothing either; int(0.15 · 8) = 1 drops the 0.2 pair.
    assert curve.fnmr[1] == 0.25 and curve.fnmr[3] == 0.0
    discard, fnmr = curve
    assert discard is curve.discard_fractions and fnmr is curve.fnmr


def test_lowest_threshold_among_equally_near_points_and_mated_ties_fail():
    # Non-mated 0.1 and 0.5: FMR 1/2 for thresholds in (0.1, 0.5]; the ROC points there are the mated
    # 0.3 and the non-mated 0.5; the lower (0.3) is taken, and the mated 0.3 (≤ 0.3) counts as a failure.
    similarity = np.array([0.3, 0.9, 0.1, 0.5])
    mated = np.array([1, 1, 0, 0], dtype=bool)
    curve = erc_curve(similarity, mated, np.arange(4.0), fmr=0.5)
    assert (curve.thresholds[0], curve.fmr[0], curve.fnmr[0]) == (0.3, 0.5, 0.5)


def _brute_force_erc(similarity, mated, quality, target):
    order = np.argsort(quality, kind="stable")
    fnmr = []
    for fraction in np.arange(20) * 0.05:
        kept = order[int(fraction * len(order)) :]
        scores, is_mated = similarity[kept], mated[kept]
        if is_mated.all() or not is_mated.any():
            fnmr.append(np.nan)
            continue
        best = None
        for threshold in np.unique(scores):  # ascending: the first of equally near points is the lowest
            distance = abs(np.mean(scores[~is_mated] >= threshold) - target)
            if best is None or distance < best[0]:
                best = (distance, threshold)
        fnmr.append(np.mean(scores[is_mated] <= best[1]))
    return np.array(fnmr)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(4, 120), st.sampled_from([1e-1, 1e-2, 1e-3]))
def test_agrees_with_brute_force(seed, size, target):
    rng = np.random.default_rng(seed)
    mated = rng.random(size) < 0.3
    similarity = np.round(np.where(mated, rng.normal(0.6, 0.2, size), rng.normal(0.2, 0.2, size)), 2)  # ties
    quality = rng.integers(0, 10, size).astype(float)
    curve = erc_curve(similarity, mated, quality, fmr=target)
    np.testing.assert_allclose(curve.fnmr, _brute_force_erc(similarity, mated, quality, target), equal_nan=True)


def test_steps_without_mated_pairs_are_undefined():
    similarity = np.array([0.9, 0.8, 0.1, 0.2])
    mated = np.array([1, 1, 0, 0], dtype=bool)
    curve = erc_curve(similarity, mated, np.array([0.0, 1.0, 2.0, 3.0]))
    assert not np.isnan(curve.fnmr[:10]).any()  # int(0.45 · 4) = 1 pair discarded
    assert np.isnan(curve.fnmr[10:]).all() and np.isnan(curve.thresholds[10:]).all()  # both mated gone
    assert np.isnan(erc_auc(curve))


def test_auc_is_the_trapezoid_over_0_to_095():
    rng = np.random.default_rng(3)
    mated = np.arange(400) < 100
    similarity = np.where(mated, rng.normal(0.5, 0.2, 400), rng.normal(0.0, 0.2, 400))
    curve = erc_curve(similarity, mated, rng.random(400), fmr=1e-2)
    widths = np.diff(ERC_DISCARD_FRACTIONS)  # the trapezoid rule, written out (np.trapezoid is NumPy ≥ 2)
    assert erc_auc(curve) == pytest.approx(np.sum(widths * (curve.fnmr[1:] + curve.fnmr[:-1]) / 2))


def test_perfect_quality_drives_fnmr_to_zero():
    rng = np.random.default_rng(0)
    mated = np.arange(1000) < 300
    similarity = np.where(mated, rng.normal(0.5, 0.2, 1000), rng.normal(0.0, 0.1, 1000))
    threshold = np.quantile(similarity[~mated], 0.99)
    # Failing mated pairs get the lowest quality: once they are gone, at most the mated pair tied with
    # the threshold fails.
    quality = np.where(mated & (similarity < threshold), 0.0, 1.0) + rng.random(1000) * 0.5
    curve = erc_curve(similarity, mated, quality, fmr=1e-2)
    assert curve.fnmr[0] > 0.05
    last_mated = mated[np.argsort(quality, kind="stable")[950:]].sum()
    assert curve.fnmr[-1] <= 1 / last_mated
    random_curve = erc_curve(similarity, mated, rng.random(1000), fmr=1e-2)
    assert erc_auc(curve) < erc_auc(random_curve)


def test_bad_arguments_are_named():
    good = (np.array([0.1, 0.9]), np.array([0, 1]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="fmr must lie"):
        erc_curve(*good, fmr=2.0)
    with pytest.raises(ValueError, match="pair_quality must be finite"):
        erc_curve(good[0], good[1], np.array([np.nan, 1.0]))
    with pytest.raises(ValueError, match="lengths differ"):
        erc_curve(good[0], good[1], np.array([1.0]))
    with pytest.raises(ValueError, match="similarity must be 1-D"):
        erc_curve(np.zeros((2, 2)), good[1], good[2])
    with pytest.raises(TypeError, match="ErcCurve"):
        erc_auc((good[0], good[2]))
