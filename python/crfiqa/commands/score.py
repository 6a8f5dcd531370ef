"""Score images with a quality model.

Write 'name score' lines for a folder, a file list or a .rec of aligned faces, or with --align for
raw photos (detected and aligned in memory as 'crfiqa align' crops them). The names are what 'crfiqa
evaluate' joins on: paths relative to the folder (id_07/img_0.png), FILE.rec:KEY for records, a
list's own lines; with --align the crops' names (id_07/img_0.png for id_07/img_0.jpg).
"""

from __future__ import annotations

import argparse
import sys

from . import CommandError
from .align import add_face_options, summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="our checkpoint or backbone.pth, the authors' *backbone.pth, or a .onnx")
    parser.add_argument("images", help="a folder (searched recursively), a .rec file, or a text file of paths")
    parser.add_argument("--output", required=True, help="text file of 'name score' lines")
    parser.add_argument(
        "--calibration",
        help="a file of 'crfiqa calibrate' for this model: adds a third column, the 0-100 quality",
    )
    parser.add_argument(
        "--embeddings", help="also save the embeddings as an (N, D) float32 .npy, in the order of --output's lines"
    )
    add_scoring_options(parser, bgr_help="feed channels in BGR order, as the authors' scoring script does by default")


def add_scoring_options(parser, *, bgr_help: str) -> None:
    """The options that say how images are turned into raw scores (shared with crfiqa calibrate)."""
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--bgr", action="store_true", help=bgr_help)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--align",
        action="store_true",
        help="IMAGES are raw photos (a photo, a folder or a list): detect and align each face first "
        "(the 'photos' extra); each photo's faces and status go to OUTPUT.faces.csv",
    )
    add_face_options(parser)


def raw_scores(prog: str, args, faces_table: str):
    """``(model, result)``: the raw scores of ``args.images`` under ``args.model`` (photos detected
    and aligned with ``--align``, their faces written to ``faces_table``)."""
    from ..formats import write_face_table
    from ..score import load_quality_model, open_images, score_images

    if args.faces and not args.align:
        raise CommandError("--faces chooses among the faces --align finds; add --align")
    model = load_quality_model(args.model, args.device)
    if args.align:
        from collections import Counter

        from ..faces import FaceDetector, check_crop_names, list_photos
        from ..score import score_photos

        faces = args.faces or "largest"
        photos = list_photos(args.images)
        check_crop_names([name for _, name in photos], faces)
        photo_scores = score_photos(
            model,
            photos,
            faces=faces,
            detector=FaceDetector(),
            batch_size=args.batch_size,
            bgr=args.bgr,
            keep_embeddings=getattr(args, "embeddings", None) is not None,
            progress=not args.no_progress,
        )
        write_face_table(faces_table, photo_scores.face_rows)
        statuses = Counter(row[2].split(":", 1)[0] for row in photo_scores.face_rows if row[1] in ("", "0"))
        if statuses["no face"] or statuses["unreadable"]:
            print(f"{prog}: {len(photos)} photo(s){summary(statuses)}: see {faces_table}", file=sys.stderr)
        if not photo_scores.names:
            raise CommandError(
                f"no face found in any of the {len(photos)} photo(s) of {args.images} (see {faces_table})"
            )
        return model, photo_scores
    dataset = open_images(args.images, model.input_size)
    result = score_images(
        model,
        dataset,
        batch_size=args.batch_size,
        num_workers=args.workers,
        bgr=args.bgr,
        keep_embeddings=getattr(args, "embeddings", None) is not None,
        progress=not args.no_progress,
    )
    for warning in result.warnings():
        print(f"{prog}: warning: {warning}", file=sys.stderr)
    if result.skipped.count:
        print(result.skipped.summary(), file=sys.stderr)
    if not result.names:
        from ..data import dataset_size

        raise CommandError(f"none of the {dataset_size(dataset)} images in {args.images} could be read")
    return model, result


def run(args) -> int:
    from crfiqa_kernels.atomic_files import write_atomically

    from ..formats import write_quality_scores

    calibration = None
    if args.calibration:
        from ..calibration import load_calibration

        calibration = load_calibration(args.calibration)
        calibration.check_model(args.model, args.calibration)
    model, result = raw_scores("crfiqa score", args, f"{args.output}.faces.csv")
    quality = calibration(result.scores) if calibration is not None else None
    write_quality_scores(args.output, result.names, result.scores, quality)
    if args.embeddings:
        import numpy as np

        assert result.embeddings is not None  # kept: keep_embeddings was set
        embeddings = result.embeddings.astype(np.float32)

        def save(path) -> None:
            with open(path, "wb") as file:  # a file object: np.save would append .npy to another name
                np.save(file, embeddings)

        write_atomically(args.embeddings, save)
    print(
        f"scored {len(result.names)} {'face' if args.align else 'image'}(s) into {args.output}"
        + (f" (skipped {result.skipped.count} unreadable)" if result.skipped.count else "")
        + (f", 0-100 quality from {args.calibration}" if calibration is not None else "")
    )
    return 0
