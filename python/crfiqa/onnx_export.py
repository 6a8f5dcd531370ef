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
    """Write ``model`` (in eval mode) as an ONNX file at ``path`` (atomically); returns the path."""
    from crfiqa_kernels.atomic_files import write_atomically

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
        write_atomically(
            path,
            lambda temporary: torch.onnx.export(
                model,
                (example,),
                str(temporary),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes=dynamic,
                opset_version=opset,
                dynamo=False,  # the TorchScript exporter: no onnxscript dependency
            ),
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
        try:
            self.session = onnxruntime.InferenceSession(os.fspath(path), providers=providers)
        except Exception as error:  # noqa: BLE001 (onnxruntime raises its own types for unreadable or invalid graphs)
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"{path} is not a readable ONNX model ({reason[:200]})") from None
        inputs = self.session.get_inputs()
        outputs = [output.name for output in self.session.get_outputs()]
        shape = inputs[0].shape if len(inputs) == 1 else []
        if (
            len(shape) != 4
            or not isinstance(shape[2], int)
            or [inputs[0].name] != [INPUT_NAME]
            or outputs != list(OUTPUT_NAMES)
        ):
            raise ValueError(
                f"{path} is not an exported quality model: expected input '{INPUT_NAME}' (N, 3, S, S) "
                f"and outputs {list(OUTPUT_NAMES)}, got {[i.name for i in inputs]} {shape} and {outputs}"
            )
        self.input_size = shape[2]

    def __call__(self, images: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        feed = {INPUT_NAME: np.ascontiguousarray(images, np.float32)}
        embedding, quality = self.session.run(list(OUTPUT_NAMES), feed)
        return embedding, quality
