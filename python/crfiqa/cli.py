"""The ``crfiqa`` command: train, align, score, calibrate, export-onnx, evaluate, pack, demo, curate.

    crfiqa demo --out demo-out
    crfiqa train data/faces_webface_112x112 --preset crfiqa-s --output runs/r50
    crfiqa align photos/ --output aligned_faces
    crfiqa score runs/r50/backbone.pth aligned_faces/ --output scores.txt --embeddings emb.npy
    crfiqa calibrate runs/r50/backbone.pth reference_photos/ --align --output calibration.json
    crfiqa score runs/r50/backbone.pth photos/ --align --calibration calibration.json --output scores.txt
    crfiqa export-onnx runs/r50/backbone.pth r50.onnx
    crfiqa evaluate --embeddings emb.npy --names scores.txt --pairs pairs.txt --quality scores.txt --output-dir eval
    crfiqa pack identity_folders/ data/train.rec
    crfiqa curate runs/r50/checkpoint.pt data/train.rec --output curation

A user's mistake (a missing or malformed file, a bad option) ends with one line
``crfiqa COMMAND: error: …`` and exit status 2; an interrupted training run saves a checkpoint and
exits with 130 (Ctrl-C) or 143 (SIGTERM). Each command lives in ``crfiqa.commands``; its options
import nothing heavy, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .commands import INPUT_ERROR, CommandError, execute

__all__ = ["INPUT_ERROR", "CommandError", "build_parser", "main"]

# The subcommands in the order --help lists them: a module of crfiqa.commands each, whose docstring
# is its help line and description, with add_arguments(parser) and run(args); the command's name is
# the module's, '_' as '-'.
COMMANDS = ("train", "align", "score", "calibrate", "export_onnx", "evaluate", "pack", "demo", "curate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crfiqa", description="CR-FIQA face image quality: train, score, evaluate.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        command = importlib.import_module(f".commands.{name}", __package__)
        summary, _, description = (command.__doc__ or "").partition("\n\n")  # "" under python -OO
        parser_of_command = commands.add_parser(
            name.replace("_", "-"), help=summary.rstrip("."), description=description
        )
        command.add_arguments(parser_of_command)
        parser_of_command.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return execute(f"crfiqa {args.command}", args)


if __name__ == "__main__":
    sys.exit(main())
