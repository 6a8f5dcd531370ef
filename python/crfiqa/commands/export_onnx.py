"""Export a backbone to ONNX.

Export a backbone (embedding and quality outputs) to ONNX.
"""

from __future__ import annotations

import argparse

from ..options import ONNX_INPUT_KINDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="our checkpoint or backbone.pth, or the authors' *backbone.pth")
    parser.add_argument("output", help="the .onnx file to write")
    parser.add_argument(
        "--input",
        choices=ONNX_INPUT_KINDS,
        default="float",
        help="what the graph takes: 'float' (default) (N, 3, S, S) normalized as for PyTorch, or 'uint8-rgb' "
        "(N, S, S, 3) aligned uint8 RGB crops with the normalization in the graph",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    parser.add_argument(
        "--no-check", action="store_true", help="skip comparing onnxruntime's outputs with PyTorch's on random input"
    )


def run(args) -> int:
    import numpy as np
    import torch

    from ..data import normalize
    from ..models import load_backbone
    from ..onnx_export import OnnxQualityModel, export_onnx

    model = load_backbone(args.model, "cpu")
    export_onnx(model, args.output, opset=args.opset, input_kind=args.input)
    message = f"wrote {args.output} ({args.input} input)"
    if not args.no_check:
        size, generator = model.input_size, torch.Generator().manual_seed(0)
        # Pixels for either kind: OnnxQualityModel hands a uint8-rgb graph the integers back.
        images = normalize(torch.randint(0, 256, (4, 3, size, size), generator=generator))
        with torch.no_grad():
            embedding, quality = model(images)
        onnx_embedding, onnx_quality = OnnxQualityModel(args.output, ["CPUExecutionProvider"])(images)
        difference = max(np.abs(onnx_embedding - embedding.numpy()).max(), np.abs(onnx_quality - quality.numpy()).max())
        message += f"; onnxruntime vs PyTorch max |difference| {difference:.2e}"
    print(message)
    return 0
