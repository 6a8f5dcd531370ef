"""PNG plots comparing quality measures: EDC (stepwise, with its theoretical best) and ERC curves.

Drawn on matplotlib's Agg canvas directly, so nothing depends on (or changes) the pyplot backend.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from crfiqa_kernels.atomic_files import write_atomically

from .edc import EdcCurve, edc_pauc, edc_theoretical_best
from .erc import ErcCurve, erc_auc


def plot_edc(curves: Mapping[str, EdcCurve], path: str | os.PathLike, *, discard_limit: float = 0.2) -> None:
    """EDC of each method (legend: pAUC up to ``discard_limit``) and the theoretical best of the first."""
    _check_curves(curves, EdcCurve)
    figure = Figure(figsize=(7, 5), dpi=120)
    axes = figure.add_subplot()
    first = next(iter(curves.values()))
    for name, curve in curves.items():
        area = edc_pauc(curve, discard_limit)
        axes.step(
            curve.discard_fractions,
            curve.error_fractions,
            where="post",
            label=f"{name} (pAUC {area.pauc:.4f}, −best {area.relative:.4f})",
        )
    best_discard, best_error = edc_theoretical_best(first)
    axes.step(best_discard, best_error, where="post", color="gray", linestyle="--", label="theoretical best")
    axes.axvline(discard_limit, color="gray", linewidth=0.8, linestyle=":")
    axes.set_xlim(0, 1)
    axes.set_ylim(bottom=0)
    axes.set_xlabel("discard fraction")
    axes.set_ylabel(first.error.upper())
    axes.set_title(f"EDC (ISO/IEC 29794-1:2024), {first.error.upper()} at threshold {first.threshold:.4g}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    _save(figure, path)


def plot_erc(curves: Mapping[str, ErcCurve], path: str | os.PathLike) -> None:
    """ERC of each method (legend: AUC over [0, 0.95]) at their common FMR target."""
    _check_curves(curves, ErcCurve)
    figure = Figure(figsize=(7, 5), dpi=120)
    axes = figure.add_subplot()
    first = next(iter(curves.values()))
    for name, curve in curves.items():
        axes.plot(
            curve.discard_fractions, curve.fnmr, marker="o", markersize=3, label=f"{name} (AUC {erc_auc(curve):.4f})"
        )
    axes.set_xlim(0, 0.95)
    axes.set_ylim(bottom=0)
    axes.set_xlabel("ratio of discarded pairs")
    axes.set_ylabel("FNMR")
    axes.set_title(f"ERC (CR-FIQA protocol), threshold re-fitted at FMR = {first.target_fmr:g}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    _save(figure, path)


def _check_curves(curves, kind) -> None:
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves must be a non-empty mapping of method name to curve")
    for name, curve in curves.items():
        if not isinstance(curve, kind):
            raise TypeError(f"curves[{name!r}] must be a {kind.__name__}, got {type(curve).__name__}")


def _save(figure: Figure, path: str | os.PathLike) -> None:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png"))
