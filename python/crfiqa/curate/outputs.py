"""The report's files: samples.csv, classes.csv, summary.json and report.txt (written into a folder
that the caller renames into place when everything is there)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence

import numpy as np

from .settings import DUPLICATE, LOW_QUALITY, MISLABELED

SAMPLE_COLUMNS = ("key", "label", "ccs", "nnccs", "nearest_class", "cr", "quality", "flags")
CLASS_COLUMNS = (
    "class",
    "name",
    "count",
    "mean_ccs",
    "nearest_class",
    "center_cosine",
    "likely_mislabeled",
    "duplicate_identity",
)


def _number(value: float) -> str:
    return "" if not np.isfinite(value) else f"{float(value):.6g}"


def write_samples_csv(path: str, keys: Sequence[str], samples, flags) -> None:
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(SAMPLE_COLUMNS)
        for row in range(len(samples)):
            marks = [
                name
                for name, values in (
                    (MISLABELED, flags.mislabeled),
                    (DUPLICATE, flags.duplicate),
                    (LOW_QUALITY, flags.low_quality),
                )
                if values[row]
            ]
            writer.writerow(
                (
                    keys[row],
                    int(samples.label[row]),
                    _number(samples.ccs[row]),
                    _number(samples.nnccs[row]),
                    int(samples.nearest_class[row]),
                    _number(samples.cr[row]),
                    _number(samples.quality[row]),
                    ";".join(marks),
                )
            )


def write_classes_csv(path: str, names: list[str], totals, neighbors, flags, samples) -> None:
    mislabeled_per_class = np.bincount(samples.label[flags.mislabeled], minlength=len(names))
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CLASS_COLUMNS)
        for cls in range(len(names)):
            writer.writerow(
                (
                    cls,
                    names[cls],
                    int(totals.count[cls]),
                    _number(totals.mean_ccs[cls]),
                    int(neighbors.nearest_class[cls]),
                    _number(neighbors.cosine[cls]),
                    int(mislabeled_per_class[cls]),
                    int(flags.duplicate_class[cls]),
                )
            )


def write_json(path: str, payload: dict) -> None:
    with open(path, "w", encoding="utf-8") as file:
        json.dump(payload, file, indent=2)
        file.write("\n")


def report_text(summary: dict) -> str:
    counts, rules, settings = summary["counts"], summary["rules"], summary["thresholds"]
    lines = [
        "crfiqa curate report",
        "====================",
        f"model: {summary['model']}",
        f"data:  {summary['data']}",
        f"samples read: {summary['samples']:,} (skipped as unreadable: {summary['skipped']:,}); "
        f"classes in the model: {summary['classes']:,}, with samples: {summary['classes_with_samples']:,}",
        f"class-center neighbours: {summary['centers']['description']}",
        "",
        "Flags (samples may carry several):",
    ]
    for name in (MISLABELED, DUPLICATE, LOW_QUALITY):
        share = counts[name] / max(summary["samples"], 1)
        lines.append(f"  {name:20s} {counts[name]:>10,} samples ({share:.2%})")
    lines.append(f"  duplicate pairs      {counts['duplicate_pairs']:>10,} pairs of classes")
    lines += ["", "Rules:"]
    lines += [f"  {name}: {rule}" for name, rule in rules.items()]
    lines += ["", "Thresholds (options): " + ", ".join(f"{key} = {value:g}" for key, value in settings.items())]
    if np.isfinite(summary.get("low_quality_threshold", float("nan"))):
        lines.append(f"  (low quality: predicted quality <= {summary['low_quality_threshold']:.6g})")
    lines += [
        "",
        "Duplicate identity candidates (highest mutual nearest share first, then center cosine):",
        "  share   cosine  flagged  classes  (supporting samples; of which closer to the other center)",
    ]
    for pair in summary["duplicate_pairs"][:20]:
        lines.append(
            f"  {pair['share']:.3f}  {pair['cosine']:+.3f}  {'yes' if pair['flagged'] else 'no ':7s}  "
            f"{pair['first_name']} / "
            f"{pair['second_name']}  ({pair['supporting']}; {pair['supporting_mislabeled']})"
        )
    lines += [
        "",
        "Most suspicious samples (likely mislabeled, highest NNCCS - CCS first):",
        "  NNCCS-CCS   CCS     NNCCS   given -> nearest   key",
    ]
    for sample in summary["most_suspicious"][:20]:
        lines.append(
            f"  {sample['nnccs'] - sample['ccs']:+.3f}    {sample['ccs']:+.3f}  {sample['nnccs']:+.3f}  "
            f"{sample['label_name']} -> {sample['nearest_name']}   {sample['key']}"
        )
    lines += ["", "Files: samples.csv, classes.csv, summary.json, ccs_vs_nnccs.png, cr_histogram.png, suspicious.png"]
    return "\n".join(lines) + "\n"


def write_report_text(path: str, summary: dict) -> None:
    with open(path, "w", encoding="utf-8") as file:
        file.write(report_text(summary))
