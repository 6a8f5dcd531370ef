"""The outputs of ``crfiqa evaluate``: ``evaluation.json``, ``report.txt`` (the tables) and the plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

from .edc import edc_error_at
from .erc import ERC_DISCARD_FRACTIONS, erc_auc
from .evaluation import Evaluation
from .plots import plot_edc, plot_erc

EDC_PROTOCOL = (
    "EDC, ISO/IEC 29794-1:2024 / Schlett et al. 2023: pairwise quality = min, comparison threshold fixed "
    "before discarding, ties discarded together, FNMR over the mated comparisons, stepwise pAUC"
)
ERC_PROTOCOL = (
    "ERC, CR-FIQA paper protocol: discard 0, 0.05 ... 0.95 of all pairs (lowest pairwise quality first), "
    "threshold re-fitted on the remaining pairs at the ROC point nearest the FMR target, mated scores "
    "<= threshold count as non-matches, trapezoid AUC"
)


def write_outputs(evaluation: Evaluation, sources: dict, output_dir: str) -> str:
    """Write the JSON, the text report and the plots into ``output_dir``; returns the report."""
    from crfiqa_kernels.atomic_files import write_text_atomically

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    plot_edc(evaluation.edc, output / "edc.png", discard_limit=evaluation.pauc_limit)
    for fmr, curves in evaluation.erc.items():
        plot_erc(curves, output / f"erc_fmr{fmr:.0e}.png")
    report = text_report(evaluation)
    write_text_atomically(
        output / "evaluation.json", json.dumps(_json_safe(results(evaluation, sources)), indent=1) + "\n"
    )
    write_text_atomically(output / "report.txt", report + "\n")
    return report


def results(evaluation: Evaluation, sources: dict) -> dict:
    """Everything measured, as plain values (``sources``: the input files and options)."""
    return {
        **sources,
        "pair_count": evaluation.pair_count,
        "mated_count": evaluation.mated_count,
        "warnings": evaluation.warnings,
        "edc": {
            "protocol": EDC_PROTOCOL,
            "error": "fnmr",
            "threshold": evaluation.threshold,
            "threshold_rule": evaluation.threshold_rule,
            "pauc_discard_limit": evaluation.pauc_limit,
            "methods": {
                name: {
                    "pauc": evaluation.areas[name].pauc,
                    "theoretical_best": evaluation.areas[name].theoretical_best,
                    "pauc_minus_best": evaluation.areas[name].relative,
                    "starting_error": float(curve.error_fractions[0]),
                    "discard_fractions": curve.discard_fractions.tolist(),
                    "error_fractions": curve.error_fractions.tolist(),
                }
                for name, curve in evaluation.edc.items()
            },
        },
        "erc": [
            {
                "protocol": ERC_PROTOCOL,
                "fmr": fmr,
                "discard_fractions": ERC_DISCARD_FRACTIONS.tolist(),
                "methods": {
                    name: {"auc": erc_auc(curve), "fnmr": curve.fnmr.tolist(), "thresholds": curve.thresholds.tolist()}
                    for name, curve in curves.items()
                },
            }
            for fmr, curves in evaluation.erc.items()
        ],
    }


def text_report(evaluation: Evaluation) -> str:
    """The EDC and ERC tables, one column per method."""
    names = list(evaluation.edc)
    width = max(10, *(len(n) + 2 for n in names))
    header = "discard".ljust(12) + "".join(n.rjust(width) for n in names)

    def row(label: str, values) -> str:
        return label.ljust(12) + "".join(_number(v).rjust(width) for v in values)

    lines = [
        f"{len(names)} quality measures, {evaluation.pair_count} pairs ({evaluation.mated_count} mated)",
        "",
        EDC_PROTOCOL,
        f"FNMR at threshold {evaluation.threshold:.6g} ({evaluation.threshold_rule})",
        header,
    ]
    at = {name: edc_error_at(curve, ERC_DISCARD_FRACTIONS) for name, curve in evaluation.edc.items()}
    lines += [row(f"{d:.2f}", [at[n][i] for n in names]) for i, d in enumerate(ERC_DISCARD_FRACTIONS)]
    areas = evaluation.areas
    lines += [
        row(f"pAUC@{evaluation.pauc_limit:g}", [areas[n].pauc for n in names]),
        row("best", [areas[n].theoretical_best for n in names]),
        row("pAUC-best", [areas[n].relative for n in names]),
    ]
    for fmr, curves in evaluation.erc.items():
        lines += ["", ERC_PROTOCOL, f"FNMR at the threshold re-fitted to FMR = {fmr:g}", header]
        for i, fraction in enumerate(ERC_DISCARD_FRACTIONS):
            lines.append(row(f"{fraction:.2f}", [curves[n].fnmr[i] for n in names]))
        lines.append(row("AUC", [erc_auc(curves[n]) for n in names]))
    return "\n".join(lines)


def _number(value: float) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.4f}"


def _json_safe(value):
    """NaN (an undefined ERC step) as JSON null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value
