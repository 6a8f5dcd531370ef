"""``crfiqa score MODEL IMAGES --output SCORES``: quality scores (and embeddings) of images."""

from __future__ import annotations

import sys

from . import CommandError


def register(commands) -> None:
    parser = commands.add_parser(
        "score",
        help="score images with a quality model",
        description="Write 'name score' lines for a folder, a file list or a .rec of aligned faces. The names "
        "are what 'crfiqa evaluate' joins on: paths relative to the folder (id_07/img_0.png), "
        "FILE.rec:KEY for records, a list's own lines.",
    )
    parser.add_argument("model", help="our checkpoint or backbone.pth, the authors' *backbone.pth, or a .onnx")
    parser.add_argument("images", help="a folder (searched recursively), a .rec file, or a text file of paths")
    parser.add_argument("--output", required=True, help="text file of 'name score' lines")
    parser.add_argument(
        "--embeddings", help="also save the embeddings as an (N, D) float32 .npy, in the order of --output's lines"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument(
        "--bgr", action="store_true", help="feed channels in BGR order, as the authors' scoring script does by default"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args) -> int:
    from crfiqa_kernels.atomic_files import write_atomically

    from ..formats import write_quality_scores
    from ..score import load_quality_model, open_images, score_images

    model = load_quality_model(args.model, args.device)
    dataset = open_images(args.images, model.input_size)
    result = score_images(
        model,
        dataset,
        batch_size=args.batch_size,
        num_workers=args.workers,
        bgr=args.bgr,
        keep_embeddings=args.embeddings is not None,
        progress=not args.no_progress,
    )
    for warning in result.warnings():
        print(f"crfiqa score: warning: {warning}", file=sys.stderr)
    if result.skipped.count:
        print(result.skipped.summary(), file=sys.stderr)
    if not result.names:
        from ..data import dataset_size

        raise CommandError(f"none of the {dataset_size(dataset)} images in {args.images} could be read")
    write_quality_scores(args.output, result.names, result.scores)
    if args.embeddings:
        import numpy as np

        assert result.embeddings is not None  # kept: keep_embeddings was set
        embeddings = result.embeddings.astype(np.float32)

        def save(path) -> None:
            with open(path, "wb") as file:  # a file object: np.save would append .npy to another name
                np.save(file, embeddings)

        write_atomically(args.embeddings, save)
    print(
        f"scored {len(result.names)} image(s) into {args.output}"
        + (f" (skipped {result.skipped.count} unreadable)" if result.skipped.count else "")
    )
    return 0
