"""Dataset report: likely mislabeled, duplicate identities, low quality.

A dataset report from a trained CR-FIQA model: per sample CCS, NNCCS, nearest other class, CR and
quality; per class count, mean CCS and nearest other class center; flags for likely mislabeled
samples, duplicate identities and low quality; CSV, JSON, text and pictures in --output.
"""

from __future__ import annotations

import argparse

# The options of the flags' thresholds: a field of FlagSettings each, its default the field's.
FLAG_HELP = {
    "mislabel_margin": "flag a sample as likely mislabeled when NNCCS - CCS exceeds this",
    "duplicate_share": "flag two classes as one identity when at least this share of each one's samples has "
    "the other as nearest other class",
    "duplicate_cosine": "flag two classes as one identity when their centers' cosine is at least this",
    "low_quality_fraction": "flag this fraction of samples with the lowest quality",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..curate.settings import METHODS, FlagSettings

    defaults = FlagSettings()
    parser.add_argument(
        "model",
        help="a training checkpoint with the head's class centers (RUN/checkpoint.pt, "
        "the run folder, or a rank's checkpoint-rankN.pt of a torchrun run)",
    )
    parser.add_argument(
        "data",
        help="the labelled data: a .rec (or a folder with train.rec), one folder per "
        "identity, or a text file of 'PATH LABEL' lines",
    )
    parser.add_argument("--output", required=True, help="folder for the report (new, empty, or an earlier report)")
    for name, text in FLAG_HELP.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=float,
            default=getattr(defaults, name),
            help=f"{text} (default %(default)s)",
        )
    parser.add_argument(
        "--centers",
        choices=METHODS,
        default="auto",
        help="nearest other class center of each class: exact (class_stats), faiss-flat (exact), "
        "faiss-ivf (approximate); auto: exact up to 100,000 classes (default)",
    )
    parser.add_argument("--nprobe", type=int, default=32, help="IVF cells searched with --centers faiss-ivf")
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch (default %(default)s)")
    parser.add_argument("--workers", type=int, default=0, help="data loader processes")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--contact-rows", type=int, default=12, help="samples on the contact sheet")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..curate.data import open_labelled_data
    from ..curate.errors import CurateError
    from ..curate.model import load_curate_model
    from ..curate.run import CurateOptions, curate
    from ..curate.settings import FlagSettings

    for name in ("batch_size", "contact_rows", "nprobe"):
        if getattr(args, name) < 1:
            raise CurateError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.workers < 0:
        raise CurateError(f"--workers must be at least 0, got {args.workers}")
    flags = FlagSettings(**{name: getattr(args, name) for name in FLAG_HELP})
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise CurateError(f"--device {args.device} is not a device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CurateError(f"--device {args.device}: no CUDA device is available")
    model = load_curate_model(args.model, device)
    dataset = open_labelled_data(args.data, model.input_size)
    options = CurateOptions(
        flags=flags,
        centers=args.centers,
        nprobe=args.nprobe,
        batch_size=args.batch_size,
        num_workers=args.workers,
        contact_rows=args.contact_rows,
    )
    curate(
        model, dataset, args.output, options, model_name=args.model, data_name=args.data, progress=not args.no_progress
    )
    return 0
