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


def target_cosine(
    e_hat: torch.Tensor, weight: torch.Tensor, labels_local: torch.Tensor, compute_dtype: torch.dtype
) -> torch.Tensor:
    """``ê_i · ŵ_{y_i}`` (before the clamp) for the rows whose label is local, 0 for ``-1`` (no local
    target) and NaN for a label ≥ C (names no class: possible only without validation): an O(B·D)
    gather, differentiable into ``ê`` and ``W``.

    ``ŵ_y = W_y / max(‖W_y‖, 1e-12)`` is formed in the accumulate dtype, both operands are rounded to
    the compute dtype as a tile product rounds them, and the products are summed in the accumulate
    dtype. Autograd gives the target column's gradient of DESIGN §2: ``t_i·ŵ_{y_i}`` into ``ê_i`` and,
    through the normalization ``ŵ = W/‖W‖`` (linear in the upstream gradient), ``(t_i·ê_i −
    ŵ_y (ŵ_y · t_i·ê_i)) / ‖W_y‖`` scatter-added into ``W_{y_i}`` by the indexing's backward
    (``index_put_`` with accumulation, deterministic under ``torch.use_deterministic_algorithms``).
    """
    acc = e_hat.dtype
    classes = weight.shape[0]
    w_target = weight[labels_local.clamp(0, classes - 1)].to(acc)
    w_hat = w_target / w_target.norm(dim=1, keepdim=True).clamp(min=NORM_FLOOR)
    products = (e_hat.to(compute_dtype).to(acc) * w_hat.to(compute_dtype).to(acc)).sum(dim=1)
    return torch.where(labels_local < 0, 0.0, torch.where(labels_local < classes, products, float("nan")))
