"""EDC (ISO/IEC 29794-1:2024 protocol): hand-computed cases, a brute-force oracle and properties."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crfiqa.evaluate import edc

# Six mated comparisons (threshold 0.5: errors at 0, 2, 5) and two non-mated ones the FNMR ignores.
SIMILARITY = np.array([0.1, 0.9, 0.2, 0.8, 0.7, 0.3, 0.95, 0.05])
MATED = np.array([1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
QUALITY_A = np.array([1.0, 3.0, 2.0, 4.0, 2.0, 5.0, 0.0, 0.0])
QUALITY_B = np.array([9.0, 9.0, 1.0, 9.0, 9.0, 9.0, 9.0, 9.0])  # pairwise min: 1, 3, 1, 4, 2, 5


def test_hand_computed_curve_with_tied_qualities():
    curve = edc.edc_curve(SIMILARITY, MATED, QUALITY_A, QUALITY_B, threshold=0.5)
    # Quality 1 holds two comparisons (both errors): they go together, so there is no point at 1/6.
    np.testing.assert_array_equal(curve.discard_counts, [0, 2, 3, 4, 5])
    np.testing.assert_allclose(curve.discard_fractions, [0, 2 / 6, 3 / 6, 4 / 6, 5 / 6])
    np.testing.assert_allclose(curve.error_fractions, [3 / 6, 1 / 4, 1 / 3, 1 / 2, 1 / 1])
    np.testing.assert_array_equal(curve.error_counts, [3, 1, 1, 1, 1])
    np.testing.assert_array_equal(curve.quality_thresholds, [1, 2, 3, 4, 5])
    assert (curve.comparison_count, curve.threshold, curve.error) == (6, 0.5, "fnmr")
    discard, error = curve  # unpacks as the pair of arrays
    assert discard is curve.discard_fractions and error is curve.error_fractions


def test_hand_computed_pauc_and_theoretical_best():
    curve = edc.edc_curve(SIMILARITY, MATED, QUALITY_A, QUALITY_B, threshold=0.5)
    assert edc.edc_pauc(curve, 0.2).pauc == pytest.approx(0.5 * 0.2)
    assert edc.edc_pauc(curve, 0.5).pauc == pytest.approx(0.5 * 2 / 6 + 0.25 * 1 / 6)
    later = (Fraction(1, 4), Fraction(1, 3), Fraction(1, 2), 1)  # each held for 1/6
    whole = Fraction(1, 2) * Fraction(2, 6) + sum(Fraction(1, 6) * e for e in later)
    assert edc.edc_pauc(curve, 1.0).pauc == pytest.approx(float(whole))
    # Best: discard the 3 errors one by one: 3/6, 2/5, 1/4, 0/3 at 0, 1/6, 2/6, 3/6.
    best_discard, best_error = edc.edc_theoretical_best(curve)
    np.testing.assert_allclose(best_discard, [0, 1 / 6, 2 / 6, 3 / 6])
    np.testing.assert_allclose(best_error, [3 / 6, 2 / 5, 1 / 4, 0])
    area = edc.edc_pauc(curve, 0.2)
    assert area.theoretical_best == pytest.approx(0.5 / 6 + 0.4 * (0.2 - 1 / 6))
    assert area.relative == pytest.approx(area.pauc - area.theoretical_best)
    assert edc.edc_pauc(curve, 0.0) == (0.0, 0.0, 0.0)


def test_no_errors_gives_a_zero_curve():
    curve = edc.edc_curve(SIMILARITY, MATED, QUALITY_A, QUALITY_B, threshold=0.0)
    assert (curve.error_fractions == 0).all()
    assert edc.edc_pauc(curve, 1.0) == (0.0, 0.0, 1.0)
    np.testing.assert_array_equal(edc.edc_theoretical_best(curve), [[0.0], [0.0]])


def test_one_quality_value_discards_all_at_once():
    same = np.full(len(SIMILARITY), 7.0)
    curve = edc.edc_curve(SIMILARITY, MATED, same, same, threshold=0.5)
    np.testing.assert_array_equal(curve.discard_fractions, [0.0])
    np.testing.assert_array_equal(curve.error_fractions, [0.5])
    assert edc.edc_pauc(curve, 1.0).pauc == pytest.approx(0.5)


def test_all_comparisons_in_error():
    curve = edc.edc_curve(SIMILARITY, MATED, QUALITY_A, QUALITY_B, threshold=2.0)
    assert (curve.error_fractions == 1).all()
    best_discard, best_error = edc.edc_theoretical_best(curve)
    np.testing.assert_allclose(best_discard, np.arange(6) / 6)  # discarding any 5 of 6 leaves an error
    assert (best_error == 1).all()
    assert edc.edc_pauc(curve, 1.0) == pytest.approx((1.0, 1.0, 1.0))


def test_fmr_curve_runs_over_non_mated_comparisons():
    similarity = np.array([0.9, 0.1, 0.6, 0.4, 0.8, 0.2])
    mated = np.array([1, 0, 0, 0, 0, 0], dtype=bool)
    quality = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    curve = edc.edc_curve(similarity, mated, quality, quality, threshold=0.5, error="fmr")
    # Non-mated by quality: 0.1, 0.6 (false match), 0.4, 0.8 (false match), 0.2.
    np.testing.assert_allclose(curve.discard_fractions, [0, 0.2, 0.4, 0.6, 0.8])
    np.testing.assert_allclose(curve.error_fractions, [2 / 5, 2 / 4, 1 / 3, 1 / 2, 0])


def test_threshold_from_starting_error():
    similarity = np.concatenate([np.arange(1, 11) / 10, np.arange(1000) / 1000])
    mated = np.arange(len(similarity)) < 10
    quality = np.zeros(len(similarity))
    curve = edc.edc_curve(similarity, mated, quality, quality, starting_error=0.2)
    assert curve.threshold == pytest.approx(np.quantile(np.arange(1, 11) / 10, 0.2))
    assert curve.error_fractions[0] == pytest.approx(0.2)
    assert edc.threshold_at_fnmr(similarity, mated, 0.2) == curve.threshold
    fmr_curve = edc.edc_curve(similarity, mated, quality, quality, starting_error=0.01, error="fmr")
    assert fmr_curve.threshold == edc.threshold_at_fmr(similarity, mated, 0.01)
    assert fmr_curve.error_fractions[0] == pytest.approx(0.01)
    assert np.mean(similarity[~mated] >= edc.threshold_at_fmr(similarity, mated, 1e-3)) == pytest.approx(1e-3)


def _brute_force_edc(similarity, mated, pair_quality, threshold):
    scores, quality = similarity[mated], pair_quality[mated]
    points = []
    for q in np.unique(quality):
        kept = quality >= q
        points.append(((~kept).sum() / len(scores), np.mean(scores[kept] < threshold)))
    return np.array(points).T


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 60))
def test_agrees_with_brute_force(seed, size):
    rng = np.random.default_rng(seed)
    similarity = rng.integers(0, 10, size) / 10  # ties in scores
    mated = rng.random(size) < 0.6
    mated[0] = True
    quality_a, quality_b = rng.integers(0, 6, size).astype(float), rng.integers(0, 6, size).astype(float)
    curve = edc.edc_curve(similarity, mated, quality_a, quality_b, threshold=0.45)
    expected = _brute_force_edc(similarity, mated, np.minimum(quality_a, quality_b), 0.45)
    np.testing.assert_allclose(curve.discard_fractions, expected[0])
    np.testing.assert_allclose(curve.error_fractions, expected[1])


error_patterns = st.lists(st.booleans(), min_size=1, max_size=50)


@settings(max_examples=60, deadline=None)
@given(error_patterns, st.integers(0, 2**32 - 1))
def test_quality_ordering_the_errors_first_gives_the_theoretical_best(is_error, seed):
    rng = np.random.default_rng(seed)
    is_error = np.array(is_error)
    similarity = np.where(is_error, 0.2, 0.8)
    # Distinct qualities, every error below every non-error.
    quality = np.empty(len(is_error))
    quality[is_error] = rng.permutation(is_error.sum())
    quality[~is_error] = is_error.sum() + rng.permutation((~is_error).sum())
    mated = np.ones(len(is_error), dtype=bool)
    curve = edc.edc_curve(similarity, mated, quality, quality, threshold=0.5)
    size, errors = len(is_error), int(is_error.sum())
    discarded = np.arange(size)
    best = np.where(discarded <= errors, (errors - discarded) / (size - discarded), 0.0)
    np.testing.assert_allclose(edc.edc_error_at(curve, discarded / size), best)
    best_discard, best_error = edc.edc_theoretical_best(curve)
    np.testing.assert_allclose(best_discard, discarded[: len(best_discard)] / size)
    np.testing.assert_allclose(best_error, best[: len(best_error)])
    assert len(best_discard) == min(errors, size - 1) + 1
    for limit in (0.1, 0.2, 0.5, 1.0):
        area = edc.edc_pauc(curve, limit)
        assert area.pauc == pytest.approx(area.theoretical_best, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(error_patterns, st.lists(st.integers(0, 4), min_size=50, max_size=50), st.floats(0.0, 1.0))
def test_no_quality_beats_the_theoretical_best(is_error, quality, limit):
    is_error = np.array(is_error)
    quality = np.array(quality[: len(is_error)], dtype=float)  # ties allowed
    similarity = np.where(is_error, 0.2, 0.8)
    curve = edc.edc_curve(similarity, np.ones(len(is_error), dtype=bool), quality, quality, threshold=0.5)
    area = edc.edc_pauc(curve, limit)
    assert area.pauc >= area.theoretical_best - 1e-12


@settings(max_examples=15, deadline=None)
@given(st.integers(20, 60), st.floats(0.05, 0.95), st.integers(0, 2**32 - 1))
def test_random_quality_stays_flat_in_expectation(size, error_rate, seed):
    rng = np.random.default_rng(seed)
    errors = max(1, min(size - 1, round(error_rate * size)))
    similarity = np.where(np.arange(size) < errors, 0.2, 0.8)
    mated = np.ones(size, dtype=bool)
    start = errors / size
    half = np.arange(size // 2) / size  # discard counts 0 … N/2 − 1
    repeats = 300
    curves = [edc.edc_curve(similarity, mated, q, q, threshold=0.5) for q in rng.random((repeats, size))]
    mean_error = np.mean([edc.edc_error_at(c, half) for c in curves], axis=0)
    remaining = size - np.arange(size // 2)
    # Hypergeometric: a random subset of n of the N comparisons holds an error share with mean E/N.
    sigma = np.sqrt(start * (1 - start) / remaining * (size - remaining) / (size - 1) / repeats)
    assert np.all(np.abs(mean_error - start) <= 6 * sigma + 1e-12)
    mean_pauc = np.mean([edc.edc_pauc(c, 0.2).pauc for c in curves])
    assert mean_pauc == pytest.approx(start * 0.2, abs=6 * np.sqrt(start * (1 - start) / repeats) * 0.2)


def test_bad_arguments_are_named():
    args = (SIMILARITY, MATED, QUALITY_A, QUALITY_B)
    with pytest.raises(ValueError, match="exactly one"):
        edc.edc_curve(*args)
    with pytest.raises(ValueError, match="exactly one"):
        edc.edc_curve(*args, threshold=0.5, starting_error=0.1)
    with pytest.raises(ValueError, match="error must be"):
        edc.edc_curve(*args, threshold=0.5, error="eer")
    with pytest.raises(ValueError, match="starting|fnmr"):
        edc.edc_curve(*args, starting_error=1.5)
    with pytest.raises(ValueError, match="similarity must be finite"):
        edc.edc_curve(np.full(8, np.nan), MATED, QUALITY_A, QUALITY_B, threshold=0.5)
    with pytest.raises(ValueError, match="lengths differ"):
        edc.edc_curve(SIMILARITY, MATED, QUALITY_A[:3], QUALITY_B, threshold=0.5)
    with pytest.raises(ValueError, match="mated must hold only 0 and 1"):
        edc.edc_curve(SIMILARITY, np.full(8, 2), QUALITY_A, QUALITY_B, threshold=0.5)
    with pytest.raises(ValueError, match="no non-mated"):
        edc.edc_curve(SIMILARITY, np.ones(8, bool), QUALITY_A, QUALITY_B, threshold=0.5, error="fmr")
    with pytest.raises(TypeError, match="threshold must be a number"):
        edc.edc_curve(*args, threshold="0.5")
    with pytest.raises(TypeError, match="EdcCurve"):
        edc.edc_pauc((np.zeros(2), np.zeros(2)))
    curve = edc.edc_curve(*args, threshold=0.5)
    assert isinstance(curve, edc.EdcCurve)
    with pytest.raises(ValueError, match="discard_limit"):
        edc.edc_pauc(curve, 1.5)
