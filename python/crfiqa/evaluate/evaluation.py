"""The computation of ``crfiqa evaluate``: comparison scores, the EDC threshold, EDC and ERC curves.

Comparison scores are cosine similarities of the embeddings; the pairwise quality is the lower of
the two images' scores. ``warnings`` says where a threshold rests on too few comparisons to be
resolved (an FMR of 1e-3 needs at least 1,000 non-mated comparisons).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .edc import (
    EdcCurve,
    EdcPAUC,
    edc_curve,
    edc_pauc,
    threshold_at_fmr,
    threshold_at_fnmr,
)
from .erc import ErcCurve, erc_curve
from .inputs import Inputs

DEFAULT_EDC_FMR = 1e-3


@dataclass(frozen=True)
class ThresholdRule:
    """How the EDC threshold is fixed: exactly one of the three."""

    fmr: float | None = None
    starting_fnmr: float | None = None
    value: float | None = None


@dataclass
class Evaluation:
    pair_count: int
    mated_count: int
    threshold: float
    threshold_rule: str
    pauc_limit: float
    edc: dict[str, EdcCurve]
    areas: dict[str, EdcPAUC]
    erc: dict[float, dict[str, ErcCurve]]
    warnings: list[str] = field(default_factory=list)


def evaluate(inputs: Inputs, rule: ThresholdRule, erc_fmrs: list[float], pauc_limit: float) -> Evaluation:
    similarity = cosine(inputs.embeddings[inputs.first], inputs.embeddings[inputs.second])
    mated = inputs.mated
    warnings = []
    threshold, description, warning = edc_threshold(similarity, mated, rule)
    warnings += [warning] if warning else []
    warnings += [w for fmr in erc_fmrs if (w := unresolved_fmr(fmr, int((~mated).sum()), "ERC"))]
    first, second = inputs.first, inputs.second
    edc = {
        name: edc_curve(similarity, mated, q[first], q[second], threshold=threshold)
        for name, q in inputs.quality.items()
    }
    pair_quality = {name: np.minimum(q[first], q[second]) for name, q in inputs.quality.items()}
    return Evaluation(
        pair_count=len(mated),
        mated_count=int(mated.sum()),
        threshold=threshold,
        threshold_rule=description,
        pauc_limit=pauc_limit,
        edc=edc,
        areas={name: edc_pauc(curve, pauc_limit) for name, curve in edc.items()},
        erc={
            fmr: {name: erc_curve(similarity, mated, q, fmr=fmr) for name, q in pair_quality.items()}
            for fmr in erc_fmrs
        },
        warnings=warnings,
    )


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a_hat = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b_hat = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.clip(np.einsum("ij,ij->i", a_hat, b_hat), -1.0, 1.0)


def edc_threshold(similarity: np.ndarray, mated: np.ndarray, rule: ThresholdRule) -> tuple[float, str, str]:
    """``(threshold, how it was fixed, a warning or '')``."""
    if rule.value is not None:
        return float(rule.value), "given", ""
    if rule.starting_fnmr is not None:
        threshold = threshold_at_fnmr(similarity, mated, rule.starting_fnmr)
        mated_count = int(mated.sum())
        warning = ""
        if 0 < rule.starting_fnmr * mated_count < 1:
            warning = (
                f"a starting FNMR of {rule.starting_fnmr:g} needs at least {math.ceil(1 / rule.starting_fnmr):,} "
                f"mated pairs to be resolved; there are {mated_count:,}"
            )
        return threshold, f"FNMR = {rule.starting_fnmr:g} over the mated comparisons", warning
    fmr = DEFAULT_EDC_FMR if rule.fmr is None else rule.fmr
    threshold = threshold_at_fmr(similarity, mated, fmr)
    return threshold, f"FMR = {fmr:g} over all non-mated comparisons", unresolved_fmr(fmr, int((~mated).sum()), "EDC")


def unresolved_fmr(fmr: float, non_mated: int, curve: str) -> str:
    """A warning when ``non_mated`` comparisons cannot resolve an FMR of ``fmr``, else ''."""
    if fmr <= 0 or fmr * non_mated >= 1:
        return ""
    return (
        f"the {curve} threshold at FMR {fmr:g} needs at least {math.ceil(1 / fmr):,} non-mated pairs to be "
        f"resolved; there are {non_mated:,}, so it sits at the highest non-mated score"
    )
