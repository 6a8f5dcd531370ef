"""``crfiqa export-onnx MODEL OUT.onnx``: a backbone as ONNX, checked against PyTorch."""

from __future__ import annotations


def register(commands) -> None:
    parser = commands.add_parser(
        "export-onnx",
        help="export a backbone to ONNX",
        description="Export a backbone (embedding and quality outputs) to ONNX.",
    )
    parser.add_argument("model", help="our checkpoint or backbone.pth, or the authors' *backbone.pth")
    parser.add_argument("output", help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    parser.add_argument(
        "--no-check", action="store_true", help="skip comparing onnxruntime's outputs with PyTorch's on random input"
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    import numpy as np
    import torch

    from ..models import load_backbone
    from ..onnx_export import OnnxQualityModel, export_onnx

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
