"""The readable, materializing PyTorch oracle of DESIGN §2.

It builds the full ``B × C`` cosine matrix — the only code in the project allowed to — and lets
autograd differentiate it. Tile products run in the inputs' dtype (as a GEMM would); everything
after them runs in float32, or float64 when the inputs are float64, which makes it the oracle of
every test.

It shares the definitions of DESIGN §2 with the op (the margin's φ, the norm floor, the
accumulate dtype) but restates the arithmetic under test — the logits, the row loss, the
ignored-row mask and the mean — instead of importing :mod:`.row_loss`: an oracle sharing code
with what it checks could not catch a mistake in it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .backends.contract import accumulate_dtype
from .constants import NORM_FLOOR
from .margins import Margin
from .results import MarginCCSOutput


def cosine_matrix(embeddings: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``clamp(ê · ŵᵀ, -1, 1)`` with the GEMM in the embeddings' dtype, the result upcast."""
    accumulate = accumulate_dtype(embeddings)
    e_hat = F.normalize(embeddings.to(accumulate), dim=1, eps=NORM_FLOOR).to(embeddings.dtype)
    w_hat = F.normalize(weight.to(accumulate), dim=1, eps=NORM_FLOOR).to(embeddings.dtype)
    return (e_hat @ w_hat.T).to(accumulate).clamp(-1.0, 1.0)


def margin_ccs_loss_reference(
    embeddings: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    margin: Margin,
    *,
    reduction: str = "mean",
    margin_grad: str = "exact",
) -> MarginCCSOutput:
    cos = cosine_matrix(embeddings, weight)
    valid = labels >= 0
    target = labels.clamp(min=0).unsqueeze(1)

    target_cos = cos.gather(1, target)
    phi = margin.phi(target_cos.detach())
    slope = margin.phi_grad(target_cos.detach()) if margin_grad == "exact" else torch.ones_like(phi)
    # Value φ(c), derivative φ'(c) (or 1): the margin as DESIGN §2 differentiates it.
    target_with_margin = phi + slope * (target_cos - target_cos.detach())

    is_target = F.one_hot(target.squeeze(1), cos.shape[1]).bool() & valid.unsqueeze(1)
    logits = margin.s * torch.where(is_target, target_with_margin, cos)
    row_loss = torch.logsumexp(logits, dim=1) - logits.gather(1, target).squeeze(1)
    row_loss = torch.where(valid, row_loss, torch.zeros_like(row_loss))

    with torch.no_grad():
        ccs = torch.where(valid, target_cos.squeeze(1), torch.full_like(row_loss, float("nan")))
        nnccs, nn_index = cos.masked_fill(is_target, float("-inf")).max(dim=1)

    if reduction == "mean":
        loss = row_loss.sum() / valid.sum().clamp(min=1)
    elif reduction == "sum":
        loss = row_loss.sum()
    else:
        loss = row_loss
    return MarginCCSOutput(loss, ccs.detach(), nnccs, nn_index)
