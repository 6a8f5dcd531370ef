"""Export a backbone to ONNX and run it with onnxruntime.

The graph takes ``images`` and returns ``embedding`` (N, D) and ``quality`` (N,); the batch
dimension is dynamic. Two kinds of input (``INPUT_KINDS``):

* ``float`` (default): (N, 3, S, S) float32, normalized as for PyTorch, ``(x / 255 − 0.5) / 0.5``;
* ``uint8-rgb``: (N, S, S, 3) uint8 RGB, the aligned crops as an image library holds them, the
  normalization part of the graph, so a deployment feeds crops as they are.

:class:`OnnxQualityModel` reads either: it takes normalized (N, 3, S, S) batches like the PyTorch
model and gives a ``uint8-rgb`` graph the pixels back (exactly: they were integers).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from .models import IResNet
from .options import ONNX_INPUT_KINDS as INPUT_KINDS

INPUT_NAME = "images"
OUTPUT_NAMES = ("embedding", "quality")
OPSET = 17


class _Uint8RGBInput(torch.nn.Module):
    """``model`` behind the normalization: (N, S, S, 3) uint8 RGB in, the model's outputs out."""

    def __init__(self, model: IResNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor):
        images = pixels.permute(0, 3, 1, 2).float()
        return self.model((images / 255.0 - 0.5) / 0.5)  # data.transforms.normalize, in the graph


def export_onnx(model: IResNet, path: str | os.PathLike, *, opset: int = OPSET, input_kind: str = "float") -> str:
    """Write ``model`` (in eval mode) as an ONNX file at ``path`` (atomically) taking ``input_kind``
    images (``float`` or ``uint8-rgb``); returns the path."""
    from crfiqa_kernels.atomic_files import write_atomically

    if not isinstance(model, IResNet):
        raise TypeError(f"model must be a crfiqa.models.IResNet, got {type(model).__name__}")
    if input_kind not in INPUT_KINDS:
        raise ValueError(f"input kind must be one of {INPUT_KINDS}, got {input_kind!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    model = model.eval()
    size = model.input_size
    device = next(model.parameters()).device
    graph: torch.nn.Module = model
    example = torch.zeros(2, 3, size, size, device=device)
    if input_kind == "uint8-rgb":
        graph, example = _Uint8RGBInput(model).eval(), torch.zeros(2, size, size, 3, dtype=torch.uint8, device=device)
    dynamic = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    with warnings.catch_warnings():
        # The forward's input-shape check is static for a fixed input size; tracing may say so.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # The TorchScript exporter is deprecated in favour of the torch.export one, which needs onnxscript.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        write_atomically(
            path,
            lambda temporary: torch.onnx.export(
                graph,
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
        self.input_kind = "uint8-rgb" if len(inputs) == 1 and inputs[0].type == "tensor(uint8)" else "float"
        size_axis, channel_axis = (1, 3) if self.input_kind == "uint8-rgb" else (2, 1)
        if (
            len(shape) != 4
            or not isinstance(shape[size_axis], int)
            or shape[channel_axis] != 3
            or [inputs[0].name] != [INPUT_NAME]
            or outputs != list(OUTPUT_NAMES)
        ):
            raise ValueError(
                f"{path} is not an exported quality model: expected input '{INPUT_NAME}' (N, 3, S, S) float "
                f"or (N, S, S, 3) uint8 and outputs {list(OUTPUT_NAMES)}, got {[i.name for i in inputs]} "
                f"{shape} and {outputs}"
            )
        self.input_size = shape[size_axis]

    def __call__(self, images: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Outputs for normalized (N, 3, S, S) images, whichever input the graph takes."""
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        images = np.asarray(images, np.float32)
        if self.input_kind == "uint8-rgb":  # undo (x / 255 − 0.5) / 0.5: x = 255 (y · 0.5 + 0.5)
            pixels = np.clip(np.rint((images * 0.5 + 0.5) * 255.0), 0, 255).astype(np.uint8)
            feed = {INPUT_NAME: np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))}
        else:
            feed = {INPUT_NAME: np.ascontiguousarray(images)}
        embedding, quality = self.session.run(list(OUTPUT_NAMES), feed)
        return embedding, quality
