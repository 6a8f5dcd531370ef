"""The ``crfiqa`` command: train, score, export-onnx, evaluate, demo.

    crfiqa demo --out demo_out
    crfiqa train data/faces_webface_112x112 --preset crfiqa-s --output runs/r50
    crfiqa score runs/r50/backbone.pth aligned_faces/ --output scores.txt
    crfiqa export-onnx runs/r50/backbone.pth r50.onnx
    crfiqa evaluate --embeddings emb.npy --pairs pair_list.txt --quality scores.txt --output-dir eval

Input problems (missing paths, empty folders, no readable image) end with a one-line message and
exit status 2; unreadable images among readable ones are skipped and reported.
"""
from __future__ import annotations

import argparse
import os
import sys

INPUT_ERROR = 2


class CommandError(Exception):
    """A problem with the command's inputs: printed as one line, exit status 2."""


def _add_train(commands) -> None:
    from .train.config import AMP_MODES, CR_FORMULAS, PRESETS

    parser = commands.add_parser("train", help="train a CR-FIQA model", description="Train a CR-FIQA model.")
    parser.add_argument("data", help="a folder with train.rec/train.idx, a .rec file, or one folder per identity")
    parser.add_argument("--output", required=True, help="folder for checkpoints, backbone.pth and train.log")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="crfiqa-s", help="recipe (default crfiqa-s)")
    parser.add_argument("--network", choices=["iresnet18", "iresnet34", "iresnet50", "iresnet100"],
                        help="backbone depth (default: the preset's)")
    parser.add_argument("--num-classes", type=int, help="identities (default: the preset's, or the dataset's)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lr-steps", type=int, nargs="+", help="1-based epochs from which lr is multiplied by 0.1")
    parser.add_argument("--batch-size", type=int, help="per process")
    parser.add_argument("--lr", type=float, dest="base_lr", help="learning rate per 512 images of global batch")
    parser.add_argument("--cr", choices=CR_FORMULAS, help="CR target: paper CCS/(NNCCS+1+eps) or official CCS/NNCCS")
    parser.add_argument("--amp", choices=AMP_MODES)
    parser.add_argument("--backend", help="fused op backend (auto, chunked, triton, cuda)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    parser.add_argument("--log-every", type=int, help="steps between log lines")
    parser.add_argument("--workers", type=int, dest="num_workers", help="data loader processes")
    parser.add_argument("--tensorboard", action="store_true", default=None, help="also log to TensorBoard")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --output")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps in all")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available; torchrun: one GPU per rank)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=_run_train)


def _open_training_data(path: str, image_size: int):
    from .data import ImageFolderDataset, RecordDataset

    if not os.path.exists(path):
        raise CommandError(f"no such file or folder: {path}")
    is_rec = path.endswith(".rec") or os.path.isfile(os.path.join(path, "train.rec"))
    return RecordDataset(path, image_size) if is_rec else ImageFolderDataset(path, image_size)


def _run_train(args) -> int:
    from .models import STAGE_DEPTHS
    from .train import preset, train

    overrides = {
        name: getattr(args, name)
        for name in ("num_classes", "epochs", "lr_steps", "batch_size", "base_lr", "cr", "amp", "backend", "seed",
                     "checkpoint_every", "log_every", "num_workers", "tensorboard")
        if getattr(args, name) is not None
    }
    if args.network:
        overrides["depths"] = list(STAGE_DEPTHS[args.network])
    config = preset(args.preset, **overrides)
    dataset = _open_training_data(args.data, config.image_size)
    result = train(config, dataset, args.output, resume=args.resume, device=args.device,
                   max_steps=args.max_steps, progress=not args.no_progress)
    print(f"trained to step {result.step} (epoch {result.epoch}); checkpoint {result.checkpoint}"
          + (f"; backbone {result.backbone}" if result.backbone else ""))
    if result.skipped:
        print(f"skipped {result.skipped} unreadable image(s); see {os.path.join(args.output, 'train.log')}",
              file=sys.stderr)
    return 0


def _add_score(commands) -> None:
    parser = commands.add_parser(
        "score", help="score images with a quality model",
        description="Write 'path score' lines for a folder, a file list or a .rec of aligned faces.",
    )
    parser.add_argument("model", help="our checkpoint or backbone.pth, the authors' *backbone.pth, or a .onnx")
    parser.add_argument("images", help="a folder (searched recursively), a .rec file, or a text file of paths")
    parser.add_argument("--output", required=True, help="text file of 'path score' lines")
    parser.add_argument("--embeddings", help="also save the embeddings as an (N, D) float32 .npy, in line order")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="data loader processes")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--bgr", action="store_true",
                        help="feed channels in BGR order, as the authors' scoring script does by default")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=_run_score)


def _run_score(args) -> int:
    import numpy as np

    from .score import load_quality_model, open_images, score_images, write_scores

    model = load_quality_model(args.model, args.device)
    dataset = open_images(args.images, model.input_size)
    result = score_images(model, dataset, batch_size=args.batch_size, num_workers=args.workers, bgr=args.bgr,
                          keep_embeddings=args.embeddings is not None, progress=not args.no_progress)
    if result.skipped.count:
        print(result.skipped.summary(), file=sys.stderr)
    if not result.names:
        raise CommandError(f"none of the {len(dataset)} images in {args.images} could be read")
    write_scores(args.output, result.names, result.scores)
    if args.embeddings:
        np.save(args.embeddings, result.embeddings.astype(np.float32))
    print(f"scored {len(result.names)} image(s) into {args.output}"
          + (f" (skipped {result.skipped.count} unreadable)" if result.skipped.count else ""))
    return 0


def _add_export(commands) -> None:
    parser = commands.add_parser("export-onnx", help="export a backbone to ONNX",
                                 description="Export a backbone (embedding and quality outputs) to ONNX.")
    parser.add_argument("model", help="our checkpoint or backbone.pth, or the authors' *backbone.pth")
    parser.add_argument("output", help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--no-check", action="store_true",
                        help="skip comparing onnxruntime's outputs with PyTorch's on random input")
    parser.set_defaults(run=_run_export)


def _run_export(args) -> int:
    import numpy as np
    import torch

    from .models import load_backbone
    from .onnx_export import OnnxQualityModel, export_onnx

    model = load_backbone(args.model, "cpu")
    export_onnx(model, args.output, opset=args.opset)
    message = f"wrote {args.output}"
    if not args.no_check:
        images = torch.randn(4, 3, model.input_size, model.input_size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            embedding, quality = model(images)
        onnx_embedding, onnx_quality = OnnxQualityModel(args.output, ["CPUExecutionProvider"])(images)
        difference = max(np.abs(onnx_embedding - embedding.numpy()).max(), np.abs(onnx_quality - quality.numpy()).max())
        message += f"; onnxruntime vs PyTorch max |difference| {difference:.2e}"
    print(message)
    return 0


def _add_demo(commands) -> None:
    parser = commands.add_parser(
        "demo", help="train and check CR-FIQA on degraded digits (no download, under a minute on a CPU)",
        description="Train CR-FIQA on degraded scikit-learn digits and check that its quality tracks degradation.",
    )
    parser.add_argument("--out", help="folder for metrics.json, edc.png and the trained model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="training epochs (default 10)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=_run_demo)


def _run_demo(args) -> int:
    import dataclasses

    from .demo import DemoSettings, run_demo

    settings = DemoSettings(seed=args.seed)
    if args.epochs is not None:
        scale = args.epochs / settings.epochs
        settings = dataclasses.replace(
            settings, epochs=args.epochs, lr_steps=tuple(max(1, round(step * scale)) for step in settings.lr_steps)
        )
    run_demo(args.out, settings, progress=not args.no_progress)
    return 0


def _add_evaluate(commands) -> None:
    from .evaluate import cli as evaluate_cli

    parser = commands.add_parser("evaluate", help="EDC/ERC comparison of quality scores",
                                 description=evaluate_cli.DESCRIPTION)
    evaluate_cli.add_arguments(parser)
    parser.set_defaults(run=evaluate_cli.run)


def _add_curate(commands) -> None:
    from .curate import cli as curate_cli

    parser = commands.add_parser("curate", help="dataset report: likely mislabeled, duplicate identities, low quality",
                                 description=curate_cli.DESCRIPTION)
    curate_cli.add_arguments(parser)
    parser.set_defaults(run=curate_cli.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crfiqa", description="CR-FIQA face image quality: train, score, evaluate.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_train, _add_score, _add_export, _add_evaluate, _add_demo, _add_curate):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CommandError, FileNotFoundError, NotADirectoryError, ValueError) as error:
        print(f"crfiqa {args.command}: error: {error}", file=sys.stderr)
        return INPUT_ERROR


if __name__ == "__main__":
    sys.exit(main())
