"""``crfiqa evaluate``: embeddings + pairs + quality files → EDC and ERC tables, JSON and PNG plots.

    crfiqa evaluate --embeddings lfw_emb.npy --pairs lfw/pair_list.txt \\
        --quality CRFIQA-L=lfw/CRFIQAL_lfw.txt lfw/SER-FIQ_lfw.txt --output-dir results/lfw

Comparison scores are cosine similarities of the embeddings; the pairwise quality is the minimum of
the two images' scores (higher = better unless the method is listed in ``--lower-is-better``).
Writes ``evaluation.json``, ``report.txt`` (the tables, also printed), ``edc.png`` and one
``erc_fmr<FMR>.png`` per FMR target into ``--output-dir``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from .edc import edc_curve, edc_error_at, edc_pauc, threshold_at_fmr, threshold_at_fnmr
from .erc import ERC_DISCARD_FRACTIONS, erc_auc, erc_curve
from crfiqa_kernels import write_text_atomically
from .pairs_io import read_pair_list, read_quality_scores, sample_key
from .plots import plot_edc, plot_erc

DESCRIPTION = "EDC (ISO/IEC 29794-1:2024) and ERC (CR-FIQA protocol) comparison of face image quality scores"
EDC_PROTOCOL = (
    "EDC, ISO/IEC 29794-1:2024 / Schlett et al. 2023: pairwise quality = min, comparison threshold fixed "
    "before discarding, ties discarded together, FNMR over the mated comparisons, stepwise pAUC"
)
ERC_PROTOCOL = (
    "ERC, CR-FIQA paper protocol: discard 0, 0.05 ... 0.95 of all pairs (lowest pairwise quality first), "
    "threshold re-fitted on the remaining pairs at the ROC point nearest the FMR target, mated scores "
    "<= threshold count as non-matches, trapezoid AUC"
)


class InputError(ValueError):
    """A missing or malformed input file: reported in one line, exit status 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``crfiqa evaluate``."""
    parser.add_argument("--embeddings", required=True, help=".npy (N, D) float array: one embedding per image")
    parser.add_argument(
        "--pairs", required=True,
        help="the authors' pair_list.txt ('name_a name_b 0|1' per line; 1 = mated) or a .npz holding "
             "'pairs' (M, 2) embedding row indices and 'mated' (M,) bools",
    )
    parser.add_argument(
        "--names",
        help="text file naming the embedding rows, one name or image path per line (matched by file name "
             "without extension); without it a name is the row number (00012 = row 12)",
    )
    parser.add_argument(
        "--quality", required=True, nargs="+", metavar="[NAME=]PATH",
        help="quality scores per method: 'path score' lines or a .npy with one score per embedding row; "
             "the method name is NAME or the file name without extension",
    )
    parser.add_argument("--lower-is-better", nargs="+", default=[], metavar="NAME",
                        help="methods whose low scores mean high quality (their scores are negated)")
    parser.add_argument("--output-dir", required=True, help="folder for evaluation.json, report.txt and the plots")
    parser.add_argument("--erc-fmr", nargs="+", type=float, default=[1e-3], metavar="FMR",
                        help="FMR targets of the ERC (default: 1e-3)")
    threshold = parser.add_mutually_exclusive_group()
    threshold.add_argument("--edc-fmr", type=float, metavar="FMR",
                           help="fix the EDC threshold at this FMR over all non-mated comparisons (default: 1e-3)")
    threshold.add_argument("--edc-starting-fnmr", type=float, metavar="FNMR",
                           help="fix the EDC threshold at this FNMR over the mated comparisons")
    threshold.add_argument("--edc-threshold", type=float, metavar="T", help="fix the EDC threshold at T")
    parser.add_argument("--pauc-limit", type=float, default=0.2, help="discard limit of the EDC pAUC (default: 0.2)")


def run(args: argparse.Namespace) -> int:
    """Run the evaluation; 0 on success, 2 (with a one-line message) for bad or missing inputs."""
    try:
        report = _evaluate(args)
    except InputError as error:
        print(f"crfiqa evaluate: error: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crfiqa.evaluate", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def _evaluate(args: argparse.Namespace) -> str:
    methods = _method_paths(args.quality)
    unknown = set(args.lower_is_better) - set(methods)
    if unknown:
        raise InputError(f"--lower-is-better names no --quality method: {sorted(unknown)}")
    for label, path in [("embeddings", args.embeddings), ("pairs", args.pairs), ("names", args.names)] + [
        (f"quality file of {name!r}", path) for name, path in methods.items()
    ]:
        if path is not None and not os.path.isfile(path):
            raise InputError(f"{label} file not found: {path}")

    try:
        embeddings = _load_embeddings(args.embeddings)
        row_keys = _load_names(args.names, len(embeddings)) if args.names else None
        first, second, mated = _load_pairs(args.pairs, row_keys, len(embeddings))
        quality = {}
        for name, path in methods.items():
            sign = -1.0 if name in args.lower_is_better else 1.0
            quality[name] = sign * _load_quality(path, row_keys, len(embeddings), first, second)
        similarity = _cosine(embeddings[first], embeddings[second])
        threshold, rule = _edc_threshold(args, similarity, mated)
        edc = {
            name: edc_curve(similarity, mated, q[first], q[second], threshold=threshold) for name, q in quality.items()
        }
        areas = {name: edc_pauc(curve, args.pauc_limit) for name, curve in edc.items()}
        pair_quality = {name: np.minimum(q[first], q[second]) for name, q in quality.items()}
        erc = {
            fmr: {name: erc_curve(similarity, mated, q, fmr=fmr) for name, q in pair_quality.items()}
            for fmr in args.erc_fmr
        }
    except (ValueError, OSError) as error:
        raise InputError(str(error)) from error

    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    plot_edc(edc, output / "edc.png", discard_limit=args.pauc_limit)
    for fmr, curves in erc.items():
        plot_erc(curves, output / f"erc_fmr{fmr:.0e}.png")

    results = {
        "embeddings": str(args.embeddings),
        "pairs": str(args.pairs),
        "pair_count": int(len(mated)),
        "mated_count": int(mated.sum()),
        "quality_files": {name: str(path) for name, path in methods.items()},
        "lower_is_better": sorted(args.lower_is_better),
        "edc": {
            "protocol": EDC_PROTOCOL,
            "error": "fnmr",
            "threshold": threshold,
            "threshold_rule": rule,
            "pauc_discard_limit": args.pauc_limit,
            "methods": {
                name: {
                    "pauc": areas[name].pauc,
                    "theoretical_best": areas[name].theoretical_best,
                    "pauc_minus_best": areas[name].relative,
                    "starting_error": float(curve.error_fractions[0]),
                    "discard_fractions": curve.discard_fractions.tolist(),
                    "error_fractions": curve.error_fractions.tolist(),
                }
                for name, curve in edc.items()
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
            for fmr, curves in erc.items()
        ],
    }
    report = _report(results, edc, areas)
    write_text_atomically(output / "evaluation.json", json.dumps(_json_safe(results), indent=1) + "\n")
    write_text_atomically(output / "report.txt", report + "\n")
    return report


def _method_paths(specs: list[str]) -> dict[str, str]:
    methods: dict[str, str] = {}
    for spec in specs:
        name, separator, path = spec.partition("=")
        if not separator:
            name, path = Path(spec).stem, spec
        if not name or not path:
            raise InputError(f"--quality expects [NAME=]PATH, got {spec!r}")
        if name in methods:
            raise InputError(f"two quality files for method {name!r}: give them distinct NAME= prefixes")
        methods[name] = path
    return methods


def _load_embeddings(path: str) -> np.ndarray:
    embeddings = np.load(path, allow_pickle=False)
    if embeddings.ndim != 2 or not np.issubdtype(embeddings.dtype, np.floating):
        raise InputError(f"{path}: embeddings must be a 2-D float array, got {embeddings.dtype} {embeddings.shape}")
    if not np.isfinite(embeddings).all():
        raise InputError(f"{path}: embeddings contain NaN or Inf")
    return embeddings.astype(np.float64)


def _load_names(path: str, rows: int) -> dict[str, int]:
    with open(path, encoding="utf-8") as file:
        keys = [sample_key(line) for line in file if line.strip()]
    if len(keys) != rows:
        raise InputError(f"{path}: {len(keys)} names for {rows} embedding rows")
    lookup = {key: row for row, key in enumerate(keys)}
    if len(lookup) != rows:
        raise InputError(f"{path}: names repeat (after dropping folders and extensions)")
    return lookup


def _row_of(key: str, row_keys: dict[str, int] | None, rows: int, source: str) -> int:
    if row_keys is not None:
        if key not in row_keys:
            raise InputError(f"{source}: {key!r} is not among the --names")
        return row_keys[key]
    if not key.isdigit() or int(key) >= rows:
        raise InputError(f"{source}: {key!r} is not a row number below {rows} (give --names to name the rows)")
    return int(key)


def _load_pairs(path: str, row_keys, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as archive:
            if "pairs" not in archive or "mated" not in archive:
                raise InputError(f"{path}: a pairs .npz needs arrays 'pairs' (M, 2) and 'mated' (M,)")
            pairs, mated = archive["pairs"], archive["mated"]
        if pairs.ndim != 2 or pairs.shape[1] != 2 or not np.issubdtype(pairs.dtype, np.integer):
            raise InputError(f"{path}: 'pairs' must be an (M, 2) integer array, got {pairs.dtype} {pairs.shape}")
        if pairs.size and (pairs.min() < 0 or pairs.max() >= rows):
            raise InputError(f"{path}: row indices must lie in [0, {rows})")
        if mated.shape != (len(pairs),):
            raise InputError(f"{path}: 'mated' must have shape ({len(pairs)},), got {mated.shape}")
        return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64), mated.astype(bool)
    pair_list = read_pair_list(path)
    first = np.array([_row_of(sample_key(name), row_keys, rows, path) for name in pair_list.first], dtype=np.int64)
    second = np.array([_row_of(sample_key(name), row_keys, rows, path) for name in pair_list.second], dtype=np.int64)
    return first, second, pair_list.mated


def _load_quality(path: str, row_keys, rows: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    if path.endswith(".npy"):
        quality = np.load(path, allow_pickle=False).astype(np.float64)
        if quality.shape != (rows,):
            raise InputError(f"{path}: expected one score per embedding row ({rows},), got {quality.shape}")
    else:
        quality = np.full(rows, np.nan)
        for key, score in read_quality_scores(path).items():
            row = row_keys.get(key) if row_keys is not None else (int(key) if key.isdigit() else None)
            if row is not None and row < rows:
                quality[row] = score
    used = np.unique(np.concatenate([first, second]))
    missing = used[~np.isfinite(quality[used])]
    if missing.size:
        examples = missing[:5].tolist()
        raise InputError(f"{path}: no finite score for {missing.size} compared images, e.g. rows {examples}")
    return quality


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a_hat = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b_hat = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.clip(np.einsum("ij,ij->i", a_hat, b_hat), -1.0, 1.0)


def _edc_threshold(args, similarity: np.ndarray, mated: np.ndarray) -> tuple[float, str]:
    if args.edc_threshold is not None:
        return float(args.edc_threshold), "given"
    if args.edc_starting_fnmr is not None:
        threshold = threshold_at_fnmr(similarity, mated, args.edc_starting_fnmr)
        return threshold, f"FNMR = {args.edc_starting_fnmr:g} over the mated comparisons"
    fmr = 1e-3 if args.edc_fmr is None else args.edc_fmr
    return threshold_at_fmr(similarity, mated, fmr), f"FMR = {fmr:g} over all non-mated comparisons"


def _report(results: dict, edc: dict, areas: dict) -> str:
    names = list(edc)
    width = max(10, *(len(n) + 2 for n in names))
    header = "discard".ljust(12) + "".join(n.rjust(width) for n in names)

    def row(label: str, values) -> str:
        return label.ljust(12) + "".join(_number(v).rjust(width) for v in values)

    lines = [
        f"{len(names)} quality measures, {results['pair_count']} pairs ({results['mated_count']} mated)",
        "",
        EDC_PROTOCOL,
        f"FNMR at threshold {results['edc']['threshold']:.6g} ({results['edc']['threshold_rule']})",
        header,
    ]
    at = {name: edc_error_at(curve, ERC_DISCARD_FRACTIONS) for name, curve in edc.items()}
    lines += [row(f"{d:.2f}", [at[n][i] for n in names]) for i, d in enumerate(ERC_DISCARD_FRACTIONS)]
    limit = results["edc"]["pauc_discard_limit"]
    lines += [
        row(f"pAUC@{limit:g}", [areas[n].pauc for n in names]),
        row("best", [areas[n].theoretical_best for n in names]),
        row("pAUC-best", [areas[n].relative for n in names]),
    ]
    for erc in results["erc"]:
        lines += ["", ERC_PROTOCOL, f"FNMR at the threshold re-fitted to FMR = {erc['fmr']:g}", header]
        for i, fraction in enumerate(erc["discard_fractions"]):
            lines.append(row(f"{fraction:.2f}", [erc["methods"][n]["fnmr"][i] for n in names]))
        lines.append(row("AUC", [erc["methods"][n]["auc"] for n in names]))
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
