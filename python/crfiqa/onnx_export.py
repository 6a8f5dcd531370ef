"""Export a backbone to ONNX and run it with onnxruntime.

The graph takes ``images`` (N, 3, S, S), normalized as for PyTorch, and returns ``embedding``
(N, D) and ``quality`` (N,); the batch dimension is dynamic.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from .models import IResNet

INPUT_NAME = "images"
OUTPUT_NAMES = ("embedding", "quality")
OPSET = 17


def export_onnx(model: IResNet, path: str | os.PathLike, *, opset: int = OPSET) -> str:
    """Write ``model`` (in eval mode) as an ONNX file at ``path``; returns the path."""
    if not isinstance(model, IResNet):
        raise TypeError(f"model must be a crfiqa.models.IResNet, got {type(model).__name__}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    model = model.eval()
    size = model.input_size
    example = torch.zeros(2, 3, size, size, device=next(model.parameters()).device)
    dynamic = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    with warnings.catch_warnings():
        # The forward's input-shape check is static for a fixed input size; tracing may say so.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # The TorchScript exporter is deprecated in favour of the torch.export one, which needs onnxscript.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            path,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,  # the TorchScript exporter: no onnxscript dependency
        )
    return path


class OnnxQualityModel:
    """An exported backbone under onnxruntime: ``model(images) -> (embedding, quality)`` as numpy."""

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None) -> None:
        import onnxruntime

        if not os.path.isfile(path):
            raise FileNotFoundError(f"ONNX model not found: {path}")
        available = onnxruntime.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = onnxruntime.InferenceSession(os.fspath(path), providers=providers)
        shape = self.session.get_inputs()[0].shape
        if len(shape) != 4 or not isinstance(shape[2], int):
            raise ValueError(f"{path}: expected an input of shape (N, 3, S, S), got {shape}")
        self.input_size = shape[2]

    def __call__(self, images: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        feed = {INPUT_NAME: np.ascontiguousarray(images, np.float32)}
        embedding, quality = self.session.run(list(OUTPUT_NAMES), feed)
        return embedding, quality
