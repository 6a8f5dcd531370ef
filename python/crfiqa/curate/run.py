"""``curate``: model + labelled data → a report folder, written whole or not at all.

Every file goes into a temporary folder beside ``output_dir``; only when all are written is it
renamed into place (a previous report there is moved aside first, then removed). An interrupted or
failed run removes its temporary folder and leaves ``output_dir`` as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset

from .centers import nearest_centers
from .data import class_names as default_class_names
from .errors import CurateError
from .flags import compute_flags
from .keys import sample_key
from .model import CurateModel
from .outputs import write_classes_csv, write_json, write_report_text, write_samples_csv
from .pictures import contact_sheet, plot_ccs_nnccs, plot_cr_histogram
from .settings import DUPLICATE, LOW_QUALITY, MISLABELED, FlagSettings
from .stats import sample_stats

REPORT_FILES = (
    "samples.csv",
    "classes.csv",
    "summary.json",
    "report.txt",
    "ccs_vs_nnccs.png",
    "cr_histogram.png",
    "suspicious.png",
)


class SampleKeys(Sequence[str]):
    """``keys[row]``: the key of a readable sample, made when asked (no list of millions of strings)."""

    def __init__(self, dataset: Dataset, index: np.ndarray) -> None:
        self.dataset, self.dataset_index = dataset, index

    def __len__(self) -> int:
        return len(self.dataset_index)

    def __getitem__(self, row):
        # an int row only: slices are not needed
        return sample_key(self.dataset, int(self.dataset_index[row]))


@dataclass(frozen=True)
class CurateOptions:
    flags: FlagSettings = FlagSettings()
    centers: str = "auto"
    nprobe: int = 32
    batch_size: int = 256
    num_workers: int = 0
    contact_rows: int = 12
    top: int = 50  # suspicious samples and duplicate pairs listed in summary.json


def _check_output(output_dir: str) -> None:
    if os.path.isfile(output_dir):
        raise CurateError(f"--output {output_dir} is a file, not a folder")
    if (
        os.path.isdir(output_dir)
        and os.listdir(output_dir)
        and not os.path.isfile(os.path.join(output_dir, "summary.json"))
    ):
        raise CurateError(
            f"--output {output_dir} is a folder with other files in it (not a curate report); "
            "choose a new or empty folder"
        )


def _move_into_place(scratch: str, output_dir: str) -> None:
    old = None
    if os.path.isdir(output_dir):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.old-", dir=os.path.dirname(output_dir))
        os.replace(output_dir, os.path.join(old, "report"))
    os.replace(scratch, output_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def curate(
    model: CurateModel,
    dataset: Dataset,
    output_dir: str | os.PathLike,
    options: CurateOptions = CurateOptions(),
    *,
    model_name: str = "",
    data_name: str = "",
    progress: bool = True,
    echo=print,
) -> dict:
    """Compute the statistics, flags and pictures of ``dataset`` (items ``(image, label)``) and write
    the report into ``output_dir``; returns the summary (also ``summary.json``)."""
    output_dir = os.path.abspath(os.fspath(output_dir))
    _check_output(output_dir)
    started = time.perf_counter()
    samples, totals = sample_stats(
        model,
        dataset,
        batch_size=options.batch_size,
        num_workers=options.num_workers,
        progress=progress,
        name=data_name or "the data",
    )
    stream_seconds = time.perf_counter() - started
    centers_started = time.perf_counter()
    neighbors = nearest_centers(model.centers, options.centers, nprobe=options.nprobe, progress=progress)
    centers_seconds = time.perf_counter() - centers_started
    flags = compute_flags(samples, neighbors, model.centers, options.flags)
    keys = SampleKeys(dataset, samples.index)
    names = default_class_names(dataset, model.num_classes)
    summary = _summary(model, samples, totals, neighbors, flags, keys, names, options, model_name, data_name)
    summary["seconds"] = {"samples": stream_seconds, "centers": centers_seconds}

    os.makedirs(os.path.dirname(output_dir), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.partial-", dir=os.path.dirname(output_dir))
    try:
        write_samples_csv(os.path.join(scratch, "samples.csv"), keys, samples, flags)
        write_classes_csv(os.path.join(scratch, "classes.csv"), names, totals, neighbors, flags, samples)
        plot_ccs_nnccs(os.path.join(scratch, "ccs_vs_nnccs.png"), samples, flags)
        plot_cr_histogram(os.path.join(scratch, "cr_histogram.png"), samples, flags, model.cr_formula)
        contact_sheet(
            os.path.join(scratch, "suspicious.png"),
            dataset,
            samples,
            flags,
            totals.typical_sample,
            names,
            keys,
            rows=options.contact_rows,
        )
        summary["seconds"]["total"] = time.perf_counter() - started
        summary["samples_per_second"] = len(samples) / summary["seconds"]["total"]
        write_report_text(os.path.join(scratch, "report.txt"), summary)
        write_json(os.path.join(scratch, "summary.json"), summary)  # last: its presence marks a whole report
        _move_into_place(scratch, output_dir)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    counts = summary["counts"]
    echo(
        f"curated {len(samples):,} samples of {summary['classes_with_samples']:,} classes into {output_dir}: "
        f"{counts[MISLABELED]:,} likely mislabeled, {counts['duplicate_pairs']:,} duplicate pair(s), "
        f"{counts[LOW_QUALITY]:,} low quality ({summary['seconds']['total']:.1f} s)"
    )
    if samples.skipped.count:
        echo(samples.skipped.summary())
    return summary


def _summary(model, samples, totals, neighbors, flags, keys, names, options, model_name, data_name) -> dict:
    top = options.top
    candidates = np.flatnonzero(flags.mislabeled) if flags.mislabeled.any() else np.arange(len(samples))
    ranked = candidates[np.lexsort((samples.index[candidates], -flags.suspicion[candidates]))][:top]
    most_suspicious = [
        {
            "key": keys[i],
            "label": int(samples.label[i]),
            "label_name": names[samples.label[i]],
            "nearest_class": int(samples.nearest_class[i]),
            "nearest_name": names[samples.nearest_class[i]],
            "ccs": float(samples.ccs[i]),
            "nnccs": float(samples.nnccs[i]),
            "quality": float(samples.quality[i]),
            "likely_mislabeled": bool(flags.mislabeled[i]),
        }
        for i in ranked
    ]
    pairs = [
        {
            "first": pair.first,
            "second": pair.second,
            "first_name": names[pair.first],
            "second_name": names[pair.second],
            "share": pair.share,
            "cosine": pair.cosine,
            "flagged": pair.flagged,
            "supporting": pair.supporting,
            "supporting_mislabeled": pair.supporting_mislabeled,
            "supporting_keys": _supporting_keys(samples, keys, pair, limit=10),
        }
        for pair in flags.pairs[:top]
    ]
    return {
        "model": model_name or model.source,
        "data": data_name,
        "samples": len(samples),
        "skipped": samples.skipped.count,
        "classes": model.num_classes,
        "classes_with_samples": int((totals.count > 0).sum()),
        "cr_formula": model.cr_formula,
        "centers": {"method": neighbors.method, "exact": neighbors.exact, "description": neighbors.description},
        "thresholds": options.flags.to_dict(),
        "rules": options.flags.rules(),
        "counts": {
            MISLABELED: int(flags.mislabeled.sum()),
            DUPLICATE: int(flags.duplicate.sum()),
            LOW_QUALITY: int(flags.low_quality.sum()),
            "duplicate_pairs": int(sum(pair.flagged for pair in flags.pairs)),
        },
        "low_quality_threshold": flags.low_quality_threshold,
        "means": {
            "ccs": float(np.nanmean(samples.ccs)),
            "nnccs": float(np.nanmean(samples.nnccs)),
            "cr": float(np.nanmean(samples.cr)),
            "quality": float(np.nanmean(samples.quality)),
        },
        "duplicate_pairs": pairs,
        "most_suspicious": most_suspicious,
    }


def _supporting_keys(samples, keys, pair, limit: int) -> list[str]:
    member = ((samples.label == pair.first) & (samples.nearest_class == pair.second)) | (
        (samples.label == pair.second) & (samples.nearest_class == pair.first)
    )
    rows = np.flatnonzero(member)
    rows = rows[np.argsort(-(samples.nnccs[rows] - samples.ccs[rows]), kind="stable")][:limit]
    return [keys[i] for i in rows]
