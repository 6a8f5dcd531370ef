"""Train a CR-FIQA model.

Train a CR-FIQA model.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from crfiqa_kernels.options import CR_FORMULAS, MARGIN_GRADS

from ..options import AMP_MODES, LOSS_PARAMETERS, LOSSES

# The keys of crfiqa.train.PRESETS and crfiqa.models.STAGE_DEPTHS (a test checks that they agree),
# written out so that ``--help`` need not import torch.
PRESET_NAMES = ("crfiqa-l", "crfiqa-s", "tiny")
NETWORKS = ("iresnet18", "iresnet34", "iresnet50", "iresnet100")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="a folder with train.rec/train.idx, a .rec file, or one folder per identity")
    parser.add_argument(
        "--output",
        required=True,
        help="folder for checkpoint.pt, backbone.pth and train.log; one that holds a run needs --resume or --overwrite",
    )
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="continue the run in --output from its checkpoint")
    existing.add_argument(
        "--overwrite",
        action="store_true",
        help="start again in an --output that holds a run; the old run is moved into OUTPUT/previous-N/, never deleted",
    )
    parser.add_argument("--preset", choices=PRESET_NAMES, default="crfiqa-s", help="recipe (default crfiqa-s)")
    parser.add_argument("--network", choices=NETWORKS, help="backbone depth (default: the preset's)")
    margin = parser.add_argument_group(
        "loss (the margin family and its hyperparameters; default: the preset's ArcFace s=64, m=0.5)"
    )
    margin.add_argument("--loss", choices=LOSSES, help="the margin family of the class-center head")
    for parameter, (flag, kind, help_text) in LOSS_FLAGS.items():
        users = ", ".join(loss for loss in LOSSES if parameter in LOSS_PARAMETERS[loss])
        margin.add_argument(flag, dest=f"loss_{parameter}", help=f"{help_text} ({users})", **kind)
    margin.add_argument(
        "--margin-grad",
        choices=MARGIN_GRADS,
        help="exact margin gradient, or the margin as a constant shift (straight_through)",
    )
    for dest, (flag, kind, help_text) in PRESET_FLAGS.items():
        parser.add_argument(flag, dest=dest, help=help_text, **kind)
    parser.add_argument("--max-steps", type=int, help="stop after this many steps in all")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available; torchrun: one GPU per rank)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


_REAL: dict[str, Any] = {"type": float}
_SWITCH: dict[str, Any] = {"action": argparse.BooleanOptionalAction}
# Each family hyperparameter (crfiqa.options.LOSS_PARAMETERS) -> its flag, argparse kind and help.
LOSS_FLAGS: dict[str, tuple[str, dict[str, Any], str]] = {
    "s": ("--margin-scale", _REAL, "the logit scale s"),
    "m": ("--margin", _REAL, "the margin m (ElasticFace: the mean of its draws)"),
    "std": ("--elastic-std", _REAL, "ElasticFace: the std of the drawn margins"),
    "plus": ("--elastic-plus", _SWITCH, "ElasticFace+: the draws sorted against the target cosines"),
    "h": ("--adaface-h", _REAL, "AdaFace: the concentration h of the norm scaler"),
    "t_alpha": ("--adaface-t-alpha", _REAL, "AdaFace: the momentum of the norms' running mean and std"),
    "l_a": ("--magface-l-a", _REAL, "MagFace: the lower bound of the feature norm"),
    "u_a": ("--magface-u-a", _REAL, "MagFace: the upper bound of the feature norm"),
    "l_margin": ("--magface-l-margin", _REAL, "MagFace: the margin at l_a"),
    "u_margin": ("--magface-u-margin", _REAL, "MagFace: the margin at u_a"),
    "lambda_g": ("--magface-lambda-g", _REAL, "MagFace: the weight of the norm regularizer g"),
    "easy_margin": ("--magface-easy-margin", _SWITCH, "MagFace: the margin only where cos θ > 0 (default on)"),
}

_INT: dict[str, Any] = {"type": int}
# Each preset field that a flag can override (crfiqa.train.TrainConfig) -> its flag, argparse kind and help.
PRESET_FLAGS: dict[str, tuple[str, dict[str, Any], str]] = {
    "num_classes": (
        "--num-classes",
        _INT,
        "identities (default: the dataset's count; the preset's when the data cannot tell)",
    ),
    "epochs": ("--epochs", _INT, "epochs to train (default: the preset's)"),
    "lr_steps": ("--lr-steps", {"type": int, "nargs": "+"}, "1-based epochs from which lr is multiplied by 0.1"),
    "batch_size": ("--batch-size", _INT, "images per step and process"),
    "base_lr": ("--lr", _REAL, "learning rate per 512 images of global batch"),
    "cr": ("--cr", {"choices": CR_FORMULAS}, "CR target: paper CCS/(NNCCS+1+eps) or official CCS/NNCCS"),
    "sample_rate": (
        "--sample-rate",
        _REAL,
        "fraction of each rank's class centers sampled per step (PartialFC; sharded head, "
        "torchrun with more than one process)",
    ),
    "amp": ("--amp", {"choices": AMP_MODES}, "mixed precision (default none)"),
    "backend": ("--backend", {}, "fused op backend: auto, chunked, triton or cuda"),
    "seed": ("--seed", _INT, "seed of the initialization, data order and augmentation"),
    "checkpoint_every": ("--checkpoint-every", _INT, "steps between checkpoints"),
    "checkpoint_minutes": (
        "--checkpoint-minutes",
        _REAL,
        "also checkpoint when this many minutes passed since the last one (default 5)",
    ),
    "log_every": ("--log-every", _INT, "steps between log lines"),
    "num_workers": ("--workers", _INT, "data loader processes"),
    "tensorboard": ("--tensorboard", {"action": "store_true", "default": None}, "also log to TensorBoard"),
}
OVERRIDES = (*PRESET_FLAGS, "margin_grad")


def _loss(args, preset_loss: str) -> dict:
    """``loss`` and ``loss_options`` from ``--loss`` and the family flags given; a flag of another
    family is an error naming it."""
    loss = args.loss or preset_loss
    options = {}
    for parameter, (flag, _, _) in LOSS_FLAGS.items():
        value = getattr(args, f"loss_{parameter}")
        if value is None:
            continue
        if parameter not in LOSS_PARAMETERS[loss]:
            raise ValueError(f"{flag} is not an option of --loss {loss}")
        options[parameter] = value
    return {"loss": loss, "loss_options": options} if args.loss or options else {}


def open_training_data(path: str, image_size: int, num_classes: int | None):
    from ..data import ImageFolderDataset, RecordDataset

    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.endswith(".rec") or os.path.isfile(os.path.join(path, "train.rec")):
        return RecordDataset(path, image_size, num_classes=num_classes)
    return ImageFolderDataset(path, image_size)


def run(args) -> int:
    from ..models import STAGE_DEPTHS
    from ..train import PRESETS, TrainingInterrupted, preset, train

    overrides = {name: getattr(args, name) for name in OVERRIDES if getattr(args, name) is not None}
    overrides.update(_loss(args, PRESETS[args.preset].loss))
    if args.network:
        overrides["depths"] = list(STAGE_DEPTHS[args.network])
    dataset = open_training_data(args.data, PRESETS[args.preset].image_size, args.num_classes)
    if args.num_classes is None and getattr(dataset, "num_identities", None) is not None:
        overrides["num_classes"] = dataset.num_identities  # the data's count, not the preset's
    config = preset(args.preset, **overrides)
    try:
        result = train(
            config,
            dataset,
            args.output,
            resume=args.resume,
            overwrite=args.overwrite,
            device=args.device,
            max_steps=args.max_steps,
            progress=not args.no_progress,
            echo=print,
        )
    except TrainingInterrupted as stop:
        print(f"crfiqa train: {stop}", file=sys.stderr)
        return stop.exit_status
    print(
        f"trained to step {result.step} (epoch {result.epoch}); checkpoint {result.checkpoint}"
        + (f"; backbone {result.backbone}" if result.backbone else "")
    )
    if result.skipped:
        print(
            f"skipped {result.skipped} unreadable image(s); see {os.path.join(args.output, 'train.log')}",
            file=sys.stderr,
        )
    return 0
