"""What runs before a backend, shared by the single-device op and the sharded head: the concrete
backend, the compute dtype and the normalized operands of DESIGN §3."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import backends
from .backends.contract import accumulate_dtype
from .constants import NORM_FLOOR


@torch.compiler.assume_constant_result
def resolve_backend(name: str, device: torch.device) -> str:
    return backends.resolve(name, device)


def compute_dtype_of(embeddings: torch.Tensor) -> torch.dtype:
    """The embeddings' dtype, or the autocast dtype when autocast is on and they are float32."""
    device_type = embeddings.device.type
    if embeddings.dtype == torch.float32 and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return embeddings.dtype


def normalize_operands(embeddings: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``ê`` (differentiable, accumulate dtype) and ``1 / max(‖W_j‖, 1e-12)`` (no gradient)."""
    acc = accumulate_dtype(embeddings)
    e_hat = F.normalize(embeddings.to(acc), dim=1, eps=NORM_FLOOR)
    with torch.no_grad():
        w_inv_norm = 1.0 / weight.detach().to(acc).norm(dim=1).clamp(min=NORM_FLOOR)
    return e_hat, w_inv_norm
