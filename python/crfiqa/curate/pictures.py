"""The pictures a person looks at: CCS against NNCCS, the CR histogram, and a contact sheet of the
most suspicious samples beside the best sample (highest predicted quality) of their given and of their
nearest class.

Drawn on matplotlib's Agg canvas directly (no pyplot, no backend change).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..data import Skipped

MAX_POINTS = 100_000  # scatter points drawn (a seeded random subset beyond that)


def _save(figure: Figure, path: str) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path)


def _subset(count: int, limit: int = MAX_POINTS) -> np.ndarray:
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(0).choice(count, limit, replace=False))


def plot_ccs_nnccs(path: str, samples, flags) -> None:
    figure = Figure(figsize=(6.5, 6), dpi=120)
    axes = figure.add_subplot()
    shown = _subset(len(samples))
    flagged = flags.mislabeled[shown]
    x, y = samples.ccs[shown], samples.nnccs[shown]
    size = max(1.0, min(12.0, 20_000 / max(len(shown), 1)))
    axes.scatter(
        x[~flagged],
        y[~flagged],
        s=size,
        alpha=0.5,
        color="tab:blue",
        linewidths=0,
        rasterized=True,
        label=f"other samples ({int((~flags.mislabeled).sum()):,})",
    )
    axes.scatter(
        x[flagged],
        y[flagged],
        s=size * 1.5,
        alpha=0.8,
        color="tab:red",
        linewidths=0,
        rasterized=True,
        label=f"likely mislabeled ({int(flags.mislabeled.sum()):,})",
    )
    low = float(min(np.nanmin(x), np.nanmin(y), 0.0)) - 0.05
    high = float(max(np.nanmax(x), np.nanmax(y))) + 0.05
    axes.plot([low, high], [low, high], color="black", linewidth=1, linestyle="--", label="NNCCS = CCS")
    axes.set_xlim(low, high)
    axes.set_ylim(low, high)
    axes.set_xlabel("CCS (cosine to the own class center)")
    axes.set_ylabel("NNCCS (cosine to the nearest other class center)")
    title = "CCS against NNCCS"
    if len(shown) < len(samples):
        title += f" ({len(shown):,} of {len(samples):,} samples drawn)"
    axes.set_title(title)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    _save(figure, path)


def plot_cr_histogram(path: str, samples, flags, cr_formula: str) -> None:
    figure = Figure(figsize=(7, 4.5), dpi=120)
    axes = figure.add_subplot()
    finite = np.isfinite(samples.cr)
    cr = samples.cr[finite]
    bins = list(np.linspace(float(cr.min()), float(cr.max()) + 1e-6, 61)) if len(cr) else 10
    axes.hist(
        [cr[~flags.mislabeled[finite]], cr[flags.mislabeled[finite]]],
        bins=bins,
        stacked=True,
        color=["tab:blue", "tab:red"],
        label=["other samples", "likely mislabeled"],
    )
    axes.set_xlabel(
        f"CR ({cr_formula}: "
        + ("CCS / (NNCCS + 1 + 1e-9)" if cr_formula == "paper" else "CCS / max(NNCCS, -1e-12)")
        + ")"
    )
    axes.set_ylabel("samples")
    axes.set_title(f"Certainty ratio of {len(cr):,} samples")
    axes.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, path)


def _picture(dataset, index: int) -> np.ndarray | None:
    """The image of a dataset item as (H, W, 3) in [0, 1], or None if unreadable / missing."""
    if index < 0:
        return None
    item = dataset[int(index)]
    if isinstance(item, Skipped):
        return None
    image = item[0]
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().numpy()
    return np.clip(np.transpose(image, (1, 2, 0)) * 0.5 + 0.5, 0.0, 1.0)  # (x − 0.5) / 0.5 undone


def contact_sheet(
    path: str, dataset, samples, flags, typical: np.ndarray, class_names: list[str], keys: Sequence[str], rows: int = 12
) -> int:
    """Rows: the most suspicious samples (highest NNCCS − CCS among the likely mislabeled), then the best
    sample (highest predicted quality) of the given class and of the nearest class. Returns the rows drawn."""
    candidates = np.flatnonzero(flags.mislabeled)
    if len(candidates) == 0:  # nothing flagged: still show the least certain samples
        candidates = np.arange(len(samples))
    order = candidates[np.lexsort((samples.index[candidates], -flags.suspicion[candidates]))][:rows]
    count = max(len(order), 1)
    height = 1.9 * count + 0.6
    figure = Figure(figsize=(7.5, height), dpi=110)
    columns = ("sample", "given class", "nearest class")
    for row, sample in enumerate(order):
        given, nearest = int(samples.label[sample]), int(samples.nearest_class[sample])
        panels = (
            (
                _picture(dataset, samples.index[sample]),
                f"{os.path.basename(keys[sample])[:28]}\n"
                f"CCS {samples.ccs[sample]:+.2f} NNCCS {samples.nnccs[sample]:+.2f}",
            ),
            (_picture(dataset, typical[given]), f"given: {class_names[given][:24]}"),
            (_picture(dataset, typical[nearest]), f"nearest: {class_names[nearest][:24]}"),
        )
        for column, (image, caption) in enumerate(panels):
            axes = figure.add_subplot(count, 3, row * 3 + column + 1)
            if image is None:
                axes.text(0.5, 0.5, "no sample", ha="center", va="center", fontsize=8)
            else:
                axes.imshow(image, interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            axes.set_xlabel(caption, fontsize=7)
            if row == 0:
                axes.set_title(columns[column], fontsize=9)
    figure.suptitle(
        "Most suspicious samples: the sample, then the best sample (highest quality) of its given "
        "class and of its nearest class",
        fontsize=8,
    )
    figure.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.35 / height))
    _save(figure, path)
    return len(order)
