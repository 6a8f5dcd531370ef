"""Train and check CR-FIQA on degraded digits (no download, about 2 minutes on 2 CPU cores).

Train CR-FIQA on degraded scikit-learn digits and check that its quality tracks degradation.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        help="folder for metrics.json, edc.png and the trained model (in OUT/model, "
        "replacing the model of an earlier demo there)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, degradations and training (default 0)")
    parser.add_argument("--epochs", type=int, help="training epochs (default 10)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    import dataclasses

    from ..demo import DemoSettings, run_demo

    settings = DemoSettings(seed=args.seed)
    if args.epochs is not None:
        scale = args.epochs / settings.epochs
        settings = dataclasses.replace(
            settings, epochs=args.epochs, lr_steps=tuple(max(1, round(step * scale)) for step in settings.lr_steps)
        )
    run_demo(args.out, settings, progress=not args.no_progress)
    return 0
