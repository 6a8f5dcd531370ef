"""EDC/ERC comparison of quality scores.

EDC (ISO/IEC 29794-1:2024) and ERC (CR-FIQA protocol) comparison of face image quality scores
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``crfiqa evaluate``."""
    parser.add_argument("--embeddings", required=True, help=".npy (N, D) float array: one embedding per image")
    parser.add_argument(
        "--pairs",
        required=True,
        help="pair list, 'name_a name_b 0|1' per line (1 = mated), the names as --names has them (the authors' "
        "bare file names work where unique), or a .npz of 'pairs' (M, 2) row indices and 'mated' (M,) bools",
    )
    parser.add_argument(
        "--names",
        help="the names of the embedding rows in order: one per line, or the 'name score' file that "
        "'crfiqa score' wrote with the embeddings; without it a name is the row number (00012 = row 12)",
    )
    parser.add_argument(
        "--quality",
        required=True,
        nargs="+",
        metavar="[NAME=]PATH",
        help="quality scores per method: 'name score' lines or a .npy with one score per embedding row; "
        "the method name is NAME or the file name without extension",
    )
    parser.add_argument(
        "--lower-is-better",
        nargs="+",
        default=[],
        metavar="NAME",
        help="methods whose low scores mean high quality (their scores are negated)",
    )
    parser.add_argument("--output-dir", required=True, help="folder for evaluation.json, report.txt and the plots")
    parser.add_argument(
        "--erc-fmr", nargs="+", type=float, default=[1e-3], metavar="FMR", help="FMR targets of the ERC (default: 1e-3)"
    )
    threshold = parser.add_mutually_exclusive_group()
    threshold.add_argument(
        "--edc-fmr",
        type=float,
        metavar="FMR",
        help="fix the EDC threshold at this FMR over all non-mated comparisons (default: 1e-3)",
    )
    threshold.add_argument(
        "--edc-starting-fnmr",
        type=float,
        metavar="FNMR",
        help="fix the EDC threshold at this FNMR over the mated comparisons",
    )
    threshold.add_argument("--edc-threshold", type=float, metavar="T", help="fix the EDC threshold at T")
    parser.add_argument("--pauc-limit", type=float, default=0.2, help="discard limit of the EDC pAUC (default: 0.2)")


def run(args: argparse.Namespace) -> int:
    from ..evaluate.evaluation import ThresholdRule, evaluate
    from ..evaluate.inputs import load_inputs, parse_methods
    from ..evaluate.report import write_outputs

    methods = parse_methods(args.quality)
    inputs = load_inputs(args.embeddings, args.pairs, args.names, methods, args.lower_is_better)
    rule = ThresholdRule(fmr=args.edc_fmr, starting_fnmr=args.edc_starting_fnmr, value=args.edc_threshold)
    evaluation = evaluate(inputs, rule, args.erc_fmr, args.pauc_limit)
    for warning in evaluation.warnings:
        print(f"crfiqa evaluate: warning: {warning}", file=sys.stderr)
    sources = {
        "embeddings": str(args.embeddings),
        "pairs": str(args.pairs),
        "names": args.names,
        "quality_files": methods,
        "lower_is_better": sorted(args.lower_is_better),
    }
    print(write_outputs(evaluation, sources, args.output_dir))
    return 0
