"""Argument checks of the public ops: every failure is a ValueError/TypeError naming the argument,
raised before any computation.

Value checks (label range, finiteness) read tensor contents and therefore synchronize with the
device; they are the one documented host synchronization and are skipped with ``validate=False``
and while ``torch.compile`` traces.
"""

from __future__ import annotations

import math

import torch

from .margins import MarginFamily
from .options import MARGIN_GRADS, REDUCTIONS

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_float_matrix(name: str, tensor) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dtype not in _FLOATS:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {tensor.dtype}")
    if tensor.dim() != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(tensor.shape)}")


def check_inputs(embeddings, weight, labels, *, labels_required: bool) -> None:
    _check_float_matrix("embeddings", embeddings)
    _check_float_matrix("weight", weight)
    if embeddings.shape[0] == 0:
        raise ValueError("embeddings is an empty batch (0 rows)")
    if embeddings.shape[1] == 0:
        raise ValueError("embeddings has embedding size 0")
    if weight.shape[1] != embeddings.shape[1]:
        raise ValueError(f"weight has embedding size {weight.shape[1]} but embeddings has {embeddings.shape[1]}")
    if weight.shape[0] < 2:
        raise ValueError(f"weight must hold at least 2 classes, got {weight.shape[0]}")
    if weight.device != embeddings.device:
        raise ValueError(f"weight is on {weight.device} but embeddings is on {embeddings.device}")
    if labels is None:
        if labels_required:
            raise TypeError("labels must be an integer tensor, got None")
        return
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be an integer torch.Tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor (class indices), got {labels.dtype}")
    if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"labels must have shape ({embeddings.shape[0]},), got {tuple(labels.shape)}")
    if labels.device != embeddings.device:
        raise ValueError(f"labels is on {labels.device} but embeddings is on {embeddings.device}")


def check_options(margin, reduction: str, margin_grad: str, interclass_filter=None) -> None:
    if not isinstance(margin, MarginFamily):
        raise TypeError(
            f"margin must be a crfiqa_kernels margin family (Margin, ArcFace, …), got {type(margin).__name__}"
        )
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if margin_grad not in MARGIN_GRADS:
        raise ValueError(f"margin_grad must be one of {MARGIN_GRADS}, got {margin_grad!r}")
    check_interclass_filter(interclass_filter)


def check_interclass_filter(interclass_filter) -> None:
    """None, or PartialFC's threshold ``t`` in (−1, 1] (a cosine; ``t = 1`` filters nothing)."""
    if interclass_filter is None:
        return
    if isinstance(interclass_filter, bool) or not isinstance(interclass_filter, (int, float)):
        raise TypeError(f"interclass_filter must be None or a real number, got {type(interclass_filter).__name__}")
    if not (math.isfinite(interclass_filter) and -1.0 < interclass_filter <= 1.0):
        raise ValueError(f"interclass_filter must lie in (-1, 1], got {interclass_filter}")


def check_head_arguments(
    num_classes, embedding_size, margin, margin_grad: str, backend: str, backend_names, interclass_filter=None
) -> None:
    """The constructor arguments shared by the single-device and the sharded head."""
    for name, value in (("num_classes", num_classes), ("embedding_size", embedding_size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if embedding_size < 1:
        raise ValueError(f"embedding_size must be positive, got {embedding_size}")
    check_options(margin, "mean", margin_grad, interclass_filter)
    if backend not in backend_names:
        raise ValueError(f"backend must be one of {tuple(backend_names)}, got {backend!r}")


def check_values(embeddings, weight, labels, *, check_finite: bool) -> None:
    """Reads the tensors (a host synchronization): label range and, if asked, finiteness."""
    if labels is not None and labels.numel():
        low, high = int(labels.min()), int(labels.max())
        if low < -1:
            raise ValueError(f"labels must be ≥ -1 (-1 marks an ignored row), got {low}")
        if high >= weight.shape[0]:
            raise ValueError(f"labels must be < num_classes = {weight.shape[0]}, got {high}")
    if check_finite:
        for name, tensor in (("embeddings", embeddings), ("weight", weight)):
            if not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"{name} contains NaN or Inf")
