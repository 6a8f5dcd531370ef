"""Fit the 0-100 quality scale of a model to a reference set.

Score a reference set and fit OFIQ's logistic Q = round(100 / (1 + exp((x0 - x) / w))) with x0 = (p5
+ p95) / 2 and w = (p95 - p5) / (2 ln 9) of its raw scores, so that p5 maps to 10 and p95 to 90.
'crfiqa score --calibration FILE' then adds the 0-100 value; the file holds the model's SHA-256 and
is refused for another model.
"""

from __future__ import annotations

import argparse

from .score import add_scoring_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the model to calibrate: a checkpoint, backbone.pth or .onnx")
    parser.add_argument("images", help="the reference set: a folder, a .rec file or a file list (photos with --align)")
    parser.add_argument("--output", required=True, help="the calibration file to write (JSON)")
    add_scoring_options(parser, bgr_help="feed channels in BGR order (as crfiqa score --bgr)")


def run(args) -> int:
    from ..calibration import fit_calibration, save_calibration
    from .score import raw_scores

    _, result = raw_scores("crfiqa calibrate", args, f"{args.output}.faces.csv")
    calibration = fit_calibration(result.scores, args.model)
    save_calibration(args.output, calibration)
    print(
        f"calibrated {args.model} on {calibration.reference_size} score(s): p5 {calibration.p5:.6g} -> 10, "
        f"p95 {calibration.p95:.6g} -> 90 (x0 {calibration.x0:.6g}, w {calibration.w:.6g}); wrote {args.output}"
    )
    return 0
