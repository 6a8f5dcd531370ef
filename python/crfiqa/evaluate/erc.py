"""Error-versus-Reject Characteristic (ERC) as the CR-FIQA paper's evaluation computes it.

Protocol ("ERC, CR-FIQA protocol"), kept for reproducing the paper's tables:

* pairs are ordered by pairwise quality (given by the caller; the paper uses the minimum of the two
  samples' qualities), lowest first, ties in input order;
* at each discard fraction ``u`` of 0, 0.05 … 0.95 the ``int(u · N)`` lowest-quality pairs of **all**
  ``N`` pairs (mated and non-mated) are dropped;
* the threshold ``t`` is **re-fitted on the remaining pairs** at every step: of the ROC points at
  the remaining similarity scores (FMR(t) = share of non-mated scores ≥ t), the one whose FMR is
  nearest the target, the lowest threshold among equally near ones;
* the curve value is the FNMR at ``t`` as the paper's evaluation counts it: the share of mated
  scores **≤ t** — a mated score equal to the threshold counts as a non-match. (The ROC point itself
  would accept it; the chosen ``t`` is often a mated score, so the two counts differ by one mated
  pair at many steps, e.g. 0.0085 in FNMR with 118 mated pairs left. This count reproduces the
  paper's numbers.)

``erc_auc`` is the trapezoid area over ``[0, 0.95]``. Unlike the EDC (:mod:`.edc`) the threshold
moves, so this curve mixes quality assessment with threshold drift; use the EDC for new work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import auc, roc_curve

from .validation import as_mated, as_scores, check_fraction, check_same_length

ERC_DISCARD_FRACTIONS = np.arange(20) * 0.05  # 0, 0.05, …, 0.95


@dataclass(frozen=True)
class ErcCurve:
    """One ERC. Unpacks as ``discard_fractions, fnmr = curve``.

    ``thresholds[i]`` is the similarity threshold fitted at step ``i`` and ``fmr[i]`` the FMR of its ROC
    point (non-mated scores ≥ threshold) on the remaining pairs; all three are NaN where the remaining
    pairs hold no mated or no non-mated pair.
    """

    discard_fractions: np.ndarray
    fnmr: np.ndarray
    fmr: np.ndarray
    thresholds: np.ndarray
    target_fmr: float

    def __iter__(self):
        return iter((self.discard_fractions, self.fnmr))


def erc_curve(similarity, mated, pair_quality, *, fmr: float = 1e-3) -> ErcCurve:
    """The ERC (CR-FIQA protocol, see the module docstring) at the FMR target ``fmr``.

    ``similarity``: one score per pair (higher = more similar); ``mated``: bools;
    ``pair_quality``: one quality per pair (higher = better), e.g. the minimum of the two samples'.
    """
    similarity = as_scores("similarity", similarity)
    mated = as_mated("mated", mated)
    pair_quality = as_scores("pair_quality", pair_quality)
    check_same_length(similarity=similarity, mated=mated, pair_quality=pair_quality)
    target = check_fraction("fmr", fmr)

    order = np.argsort(pair_quality, kind="stable")
    count = len(order)
    steps = len(ERC_DISCARD_FRACTIONS)
    fnmr, fitted_fmr, thresholds = np.full(steps, np.nan), np.full(steps, np.nan), np.full(steps, np.nan)
    for step, fraction in enumerate(ERC_DISCARD_FRACTIONS):
        kept = order[int(fraction * count) :]
        kept_mated = mated[kept]
        if kept_mated.all() or not kept_mated.any():
            continue
        scores = similarity[kept]
        false_match, _, at = roc_curve(kept_mated, scores, drop_intermediate=False)
        # roc_curve starts with an "accept nothing" point at +inf; the ROC points sit at the scores.
        false_match, at = false_match[1:], at[1:]
        # Thresholds descend; the last of the nearest points is the lowest threshold among them.
        distance = np.abs(false_match - target)
        point = len(distance) - 1 - int(np.argmin(distance[::-1]))
        thresholds[step], fitted_fmr[step] = at[point], false_match[point]
        fnmr[step] = np.mean(scores[kept_mated] <= at[point])
    return ErcCurve(ERC_DISCARD_FRACTIONS.copy(), fnmr, fitted_fmr, thresholds, target)


def erc_auc(curve: ErcCurve) -> float:
    """Trapezoid area under the ERC over discard fractions ``[0, 0.95]`` (NaN if a step is undefined)."""
    if not isinstance(curve, ErcCurve):
        raise TypeError(f"curve must be an ErcCurve from erc_curve, got {type(curve).__name__}")
    if np.isnan(curve.fnmr).any():
        return float("nan")
    return float(auc(curve.discard_fractions, curve.fnmr))
