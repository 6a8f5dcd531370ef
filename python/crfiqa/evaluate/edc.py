"""Error-versus-Discard Characteristic (EDC) of ISO/IEC 29794-1:2024 and Schlett et al. (2023).

Protocol ("EDC, ISO/IEC 29794-1:2024"):

* the quality of a comparison is the **minimum** of its two samples' quality scores;
* the comparison threshold is **fixed before discarding**: given, or set from a starting error
  (a quantile of the mated scores for FNMR, of all non-mated scores for FMR);
* comparisons are discarded in ascending order of pairwise quality, **ties together**: there is one
  point for every distinct pairwise quality value ``q`` — all comparisons of quality below ``q``
  discarded;
* ``error="fnmr"``: the curve runs over the mated comparisons (an error is a score below the
  threshold; discard fractions are relative to the mated comparisons); ``error="fmr"``: over the
  non-mated comparisons (an error is a score at or above the threshold).

The curve is a step function: each point's error holds until the next point. :func:`edc_pauc`
integrates it stepwise up to a discard limit, and returns the same area for the theoretical best
curve — the one where exactly the erroneous comparisons go first — so that it can be subtracted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .validation import (
    as_finite_number,
    as_mated,
    as_scores,
    check_fraction,
    check_same_length,
)

ERROR_KINDS = ("fnmr", "fmr")


@dataclass(frozen=True)
class EdcCurve:
    """One EDC. Unpacks as ``discard_fractions, error_fractions = curve``.

    ``discard_counts[i]`` comparisons (of ``comparison_count``) are discarded at point ``i``, where
    ``error_counts[i]`` errors remain among the rest; ``quality_thresholds[i]`` is the pairwise
    quality below which everything is discarded there.
    """

    discard_fractions: np.ndarray
    error_fractions: np.ndarray
    discard_counts: np.ndarray
    error_counts: np.ndarray
    quality_thresholds: np.ndarray
    comparison_count: int
    threshold: float
    error: str

    def __iter__(self):
        return iter((self.discard_fractions, self.error_fractions))

    @property
    def starting_error_count(self) -> int:
        return int(self.error_counts[0])


class EdcPAUC(NamedTuple):
    """Stepwise area under an EDC up to ``discard_limit`` and under its theoretical best curve."""

    pauc: float
    theoretical_best: float
    discard_limit: float

    @property
    def relative(self) -> float:
        """``pauc − theoretical_best``: 0 for a quality measure that discards exactly the errors first."""
        return self.pauc - self.theoretical_best


def threshold_at_fnmr(similarity, mated, fnmr: float) -> float:
    """The similarity threshold whose FNMR over the mated comparisons is ``fnmr`` (linear quantile)."""
    similarity, mated = _scores_and_mated(similarity, mated)
    fnmr = check_fraction("fnmr", fnmr)
    if not mated.any():
        raise ValueError("mated has no mated comparison: the FNMR is undefined")
    return float(np.quantile(similarity[mated], fnmr))


def threshold_at_fmr(similarity, mated, fmr: float) -> float:
    """The similarity threshold whose FMR over all non-mated comparisons is ``fmr`` (linear quantile)."""
    similarity, mated = _scores_and_mated(similarity, mated)
    fmr = check_fraction("fmr", fmr)
    if mated.all():
        raise ValueError("mated has no non-mated comparison: the FMR is undefined")
    return float(np.quantile(similarity[~mated], 1.0 - fmr))


def edc_curve(
    similarity,
    mated,
    quality_a,
    quality_b,
    *,
    starting_error: float | None = None,
    threshold: float | None = None,
    error: str = "fnmr",
) -> EdcCurve:
    """The EDC (ISO/IEC 29794-1:2024 protocol, see the module docstring) of one quality measure.

    ``similarity``: one score per comparison (higher = more similar); ``mated``: bools;
    ``quality_a``/``quality_b``: the quality of each comparison's two samples (higher = better).
    Exactly one of ``threshold`` and ``starting_error`` fixes the comparison threshold;
    ``starting_error`` is an FNMR over the mated scores for ``error="fnmr"`` and an FMR over all
    non-mated scores for ``error="fmr"`` (use :func:`threshold_at_fmr` to run an FNMR curve at a
    threshold set by the FMR).
    """
    similarity, mated = _scores_and_mated(similarity, mated)
    quality_a = as_scores("quality_a", quality_a)
    quality_b = as_scores("quality_b", quality_b)
    check_same_length(similarity=similarity, quality_a=quality_a, quality_b=quality_b)
    if error not in ERROR_KINDS:
        raise ValueError(f"error must be one of {ERROR_KINDS}, got {error!r}")
    if (threshold is None) == (starting_error is None):
        raise ValueError("give exactly one of threshold and starting_error")
    if threshold is None:
        assert starting_error is not None  # exactly one of the two was given
        pick = threshold_at_fnmr if error == "fnmr" else threshold_at_fmr
        threshold = pick(similarity, mated, starting_error)
    threshold = as_finite_number("threshold", threshold)

    curve_rows = mated if error == "fnmr" else ~mated
    if not curve_rows.any():
        kind = "mated" if error == "fnmr" else "non-mated"
        raise ValueError(f"mated has no {kind} comparison: the {error.upper()}-EDC is undefined")
    scores = similarity[curve_rows]
    pair_quality = np.minimum(quality_a, quality_b)[curve_rows]
    is_error = scores < threshold if error == "fnmr" else scores >= threshold

    order = np.argsort(pair_quality, kind="stable")
    sorted_quality = pair_quality[order]
    # errors_from[k]: errors among the comparisons left after discarding the k lowest-quality ones
    errors_from = np.cumsum(is_error[order][::-1])[::-1]
    # One point per distinct quality value: discard all comparisons strictly below it.
    discard_counts = np.concatenate(([0], np.flatnonzero(sorted_quality[1:] != sorted_quality[:-1]) + 1))
    count = len(scores)
    error_counts = errors_from[discard_counts]
    return EdcCurve(
        discard_fractions=discard_counts / count,
        error_fractions=error_counts / (count - discard_counts),
        discard_counts=discard_counts,
        error_counts=error_counts,
        quality_thresholds=sorted_quality[discard_counts],
        comparison_count=count,
        threshold=threshold,
        error=error,
    )


def edc_theoretical_best(curve: EdcCurve) -> tuple[np.ndarray, np.ndarray]:
    """The best EDC reachable with ``curve``'s comparisons and threshold.

    Discarding exactly the ``E`` erroneous comparisons first, one at a time, leaves ``E − k`` errors
    among ``N − k`` comparisons: error ``(E − k) / (N − k)`` at discard fraction ``k / N`` for
    ``k = 0 … E`` (``k < N``), zero from ``E / N`` on. No quality measure does better at any discard
    count, so no EDC has a smaller stepwise area. (A straight line ``e₀ − d`` is sometimes drawn
    instead; it lies below this curve and no quality measure reaches it.)
    """
    _check_curve(curve)
    count, errors = curve.comparison_count, curve.starting_error_count
    discarded = np.arange(min(errors, count - 1) + 1)
    return discarded / count, (errors - discarded) / (count - discarded)


def edc_pauc(curve: EdcCurve, discard_limit: float = 0.2) -> EdcPAUC:
    """Stepwise partial area under ``curve`` over discard fractions ``[0, discard_limit]``.

    Also returns the same area under :func:`edc_theoretical_best`; ``result.relative`` is their
    difference (0 is the best any quality measure can do).
    """
    _check_curve(curve)
    discard_limit = check_fraction("discard_limit", discard_limit)
    best_discard, best_error = edc_theoretical_best(curve)
    return EdcPAUC(
        pauc=_stepwise_area(curve.discard_fractions, curve.error_fractions, discard_limit),
        theoretical_best=_stepwise_area(best_discard, best_error, discard_limit),
        discard_limit=discard_limit,
    )


def edc_error_at(curve: EdcCurve, discard_fractions) -> np.ndarray:
    """The step function's value at each of ``discard_fractions`` (the last point at or before it)."""
    _check_curve(curve)
    points = np.asarray(discard_fractions, dtype=np.float64)
    if points.ndim != 1 or ((points < 0) | (points > 1)).any():
        raise ValueError("discard_fractions must be a 1-D array of values in [0, 1]")
    return curve.error_fractions[np.searchsorted(curve.discard_fractions, points, side="right") - 1]


def _stepwise_area(discard: np.ndarray, error: np.ndarray, limit: float) -> float:
    # Point i holds its error from discard[i] to discard[i + 1] (the last one to the limit).
    ends = np.minimum(np.append(discard[1:], limit), limit)
    widths = np.clip(ends - discard, 0.0, None)
    return float(np.sum(widths * error))


def _scores_and_mated(similarity, mated) -> tuple[np.ndarray, np.ndarray]:
    similarity = as_scores("similarity", similarity)
    mated = as_mated("mated", mated)
    check_same_length(similarity=similarity, mated=mated)
    return similarity, mated


def _check_curve(curve) -> None:
    if not isinstance(curve, EdcCurve):
        raise TypeError(f"curve must be an EdcCurve from edc_curve, got {type(curve).__name__}")
