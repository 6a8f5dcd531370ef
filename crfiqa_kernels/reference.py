"""The readable, materializing PyTorch oracle of DESIGN §2.

It builds the full ``B × C`` cosine matrix — the only code in the project allowed to — and lets
autograd differentiate it. Tile products run in the inputs' dtype (as a GEMM would); everything
after them runs in float32, or float64 when the inputs are float64, which makes it the oracle of
every test.

It shares the definitions of DESIGN §2 with the op (the margin family's target logit, the norm
floor, the accumulate dtype) but restates the arithmetic under test — the clamp, the negative
transform, the logits, the row loss, the ignored-row mask and the mean — instead of importing
:mod:`.row_loss`: an oracle sharing code with what it checks could not catch a mistake in it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .backends.contract import accumulate_dtype
from .constants import NORM_FLOOR
from .margins import MarginFamily
from .results import MarginCCSOutput


def cosine_matrix(embeddings: torch.Tensor, weight: torch.Tensor, cos_clamp: float = 0.0) -> torch.Tensor:
    """``clamp(ê · ŵᵀ, -1 + ε_c, 1 - ε_c)`` with the GEMM in the embeddings' dtype, the result upcast."""
    accumulate = accumulate_dtype(embeddings)
    e_hat = F.normalize(embeddings.to(accumulate), dim=1, eps=NORM_FLOOR).to(embeddings.dtype)
    w_hat = F.normalize(weight.to(accumulate), dim=1, eps=NORM_FLOOR).to(embeddings.dtype)
    return (e_hat @ w_hat.T).to(accumulate).clamp(-1.0 + cos_clamp, 1.0 - cos_clamp)


def negative_logits(cos: torch.Tensor, s: float, kind: str, threshold, t: float) -> torch.Tensor:
    """``s·ν(c)`` of DESIGN §2 on every entry of ``cos``."""
    if kind == "none":
        return s * cos
    hard = cos > threshold.to(cos.dtype).unsqueeze(1)
    if kind == "filter":
        return s * torch.where(hard, torch.zeros_like(cos), cos)
    return s * torch.where(hard, cos * (t + cos), cos)


def margin_ccs_loss_reference(
    embeddings: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    margin: MarginFamily,
    *,
    reduction: str = "mean",
    margin_grad: str = "exact",
    interclass_filter: float | None = None,
) -> MarginCCSOutput:
    cos = cosine_matrix(embeddings, weight, margin.cos_clamp)
    valid = labels >= 0
    target = labels.clamp(min=0).unsqueeze(1)
    is_target = F.one_hot(target.squeeze(1), cos.shape[1]).bool() & valid.unsqueeze(1)

    # The target logit z_iy = τ_i(c_iy) of the family; straight-through: τ's value, the slope s.
    target_cos = cos.gather(1, target).squeeze(1)
    norms = embeddings.to(cos.dtype).norm(dim=1)
    if margin_grad == "exact":
        terms = margin.prepare(target_cos, norms, valid)
        target_logit = terms.target_logit
    else:
        terms = margin.prepare(target_cos.detach(), norms, valid)
        target_logit = terms.target_logit + margin.s * (target_cos - target_cos.detach())

    negative = terms.negative
    if interclass_filter is not None:
        negative = negative._replace(kind="filter", threshold=torch.full_like(target_cos, interclass_filter))
    logits = negative_logits(cos, margin.s, negative.kind, negative.threshold, negative.t)
    logits = torch.where(is_target, target_logit.to(cos.dtype).unsqueeze(1), logits)
    row_loss = torch.logsumexp(logits, dim=1) - logits.gather(1, target).squeeze(1)
    row_loss = torch.where(valid, row_loss, torch.zeros_like(row_loss))
    if terms.extra_loss is not None:
        row_loss = row_loss + torch.where(valid, terms.extra_loss.to(row_loss.dtype), 0.0)

    with torch.no_grad():
        ccs = torch.where(valid, target_cos, torch.full_like(row_loss, float("nan")))
        nnccs, nn_index = cos.masked_fill(is_target, float("-inf")).max(dim=1)

    if reduction == "mean":
        loss = row_loss.sum() / valid.sum().clamp(min=1)
    elif reduction == "sum":
        loss = row_loss.sum()
    else:
        loss = row_loss
    return MarginCCSOutput(loss, ccs.detach(), nnccs, nn_index)
