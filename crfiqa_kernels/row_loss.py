"""From combined row statistics to the loss (DESIGN §2), for the single-device op, the sharded head
and the CR-FIQA loss: the target logit of the margin family, the kernels' parameters, the
ignored-row mask, ``ℓ_i`` and the reductions over labelled rows.

The oracle (:mod:`.reference`) restates this arithmetic on purpose: an oracle sharing code with
what it checks could not catch a mistake in it.
"""

from __future__ import annotations

import torch

from .backends.contract import LogitParams
from .margins import MarginFamily, TargetTerms


def labelled(labels: torch.Tensor) -> torch.Tensor:
    """The rows that count: ``y_i ≥ 0`` (``-1`` marks an ignored row)."""
    return labels >= 0


def labelled_only(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``values`` on labelled rows, 0 on ignored ones (no loss, no gradient, whatever they hold)."""
    return torch.where(valid, values, 0.0)


def clamp_cosine(cos: torch.Tensor, margin: MarginFamily) -> torch.Tensor:
    """``clamp(c, −1 + ε_c, 1 − ε_c)`` with the family's ``ε_c`` (the same bounds as the kernels')."""
    return cos.clamp(-1.0 + margin.cos_clamp, 1.0 - margin.cos_clamp)


def target_terms(
    margin: MarginFamily, target_cos: torch.Tensor, norms: torch.Tensor, valid: torch.Tensor, margin_grad: str
) -> TargetTerms:
    """The family's terms for the clamped target cosines. ``"straight_through"`` hands the family
    the cosines without gradient and adds ``s·(c − c̄)``, ``c̄ = c.detach()``: the value ``τ(c)``, the
    slope ``∂z/∂c = s`` of the plain cosine logit, and the margin's own gradients (its parameters,
    the norms) kept."""
    if margin_grad == "exact":
        return margin.prepare(target_cos, norms, valid)
    detached = target_cos.detach()
    terms = margin.prepare(detached, norms, valid)
    return terms._replace(target_logit=terms.target_logit + margin.s * (target_cos - detached))


def logit_params(
    margin: MarginFamily, terms: TargetTerms, interclass_filter: float | None, batch: int, device: torch.device
) -> LogitParams:
    """The kernels' parameters: the family's scale, clamp and negative transform, or PartialFC's
    inter-class filter ``c_ij > t`` (a family with a transform of its own takes no filter: the op
    checked that)."""
    negative = terms.negative
    if interclass_filter is not None:
        if negative.kind != "none":
            raise ValueError(
                f"interclass_filter cannot be combined with a margin whose negative transform is {negative.kind!r}"
            )
        cut = torch.full((batch,), float(interclass_filter), dtype=torch.float32, device=device)
        return LogitParams(margin.s, margin.cos_clamp, "filter", cut)
    threshold = None if negative.threshold is None else negative.threshold.detach().to(torch.float32)
    return LogitParams(margin.s, margin.cos_clamp, negative.kind, threshold, float(negative.t))


def threshold_operand(logits: LogitParams, like: torch.Tensor) -> torch.Tensor:
    """The (B,) threshold tensor the custom ops take (zeros where ``ν`` has none)."""
    if logits.threshold is not None:
        return logits.threshold
    return torch.zeros(like.shape[0], dtype=torch.float32, device=like.device)


def margin_row_loss(lse_neg: torch.Tensor, target_logit: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``ℓ_i = lse_i − z_iy`` with ``lse_i = logaddexp(lse_neg_i, z_iy)`` for labelled rows, 0 for
    ignored ones. Autograd: ``∂ℓ_i/∂lse_neg_i = 1 − p_iy`` (what the kernels' backward receives) and
    ``∂ℓ_i/∂z_iy = p_iy − 1`` with ``p_iy = exp(z_iy − lse_i)``."""
    target_logit = labelled_only(target_logit.to(lse_neg.dtype), valid)
    return labelled_only(torch.logaddexp(lse_neg, target_logit) - target_logit, valid)


def mean_over_labelled(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over the labelled rows, 0 if there are none."""
    return labelled_only(values, valid).sum() / valid.sum().clamp(min=1)


def reduce_rows(
    row_loss: torch.Tensor, valid: torch.Tensor, reduction: str, extra_loss: torch.Tensor | None = None
) -> torch.Tensor:
    """``"mean"`` over labelled rows (0 if none), ``"sum"``, or ``"none"`` (the rows themselves). A
    family's ``extra_loss`` is a mean over the labelled rows: added once to the mean, ``N_valid``
    times to the sum and to each labelled row of ``"none"``."""
    if extra_loss is not None:
        row_loss = row_loss + labelled_only(extra_loss.to(row_loss.dtype).expand_as(row_loss), valid)
    if reduction == "mean":
        return mean_over_labelled(row_loss, valid)
    if reduction == "sum":
        return row_loss.sum()
    return row_loss
