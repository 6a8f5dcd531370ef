"""The public ops: validation, the target logit, the combine step and the autograd custom ops.

This is the only module that registers ``torch.library`` custom ops:

``crfiqa_kernels::margin_ccs_rows``           forward partials of the chosen backend + combine
                                              → per row the log-sum-exp of the non-target logits
                                              ``lse_neg``, CCS, NNCCS, nn_index
``crfiqa_kernels::margin_ccs_rows_backward``  the backend's backward → dê, dW (non-target part)

Both have fake implementations, so ``torch.compile(fullgraph=True)`` traces a training step
through them. The target logit is PyTorch around them (DESIGN §3): the target cosine ``c_iy`` is
an O(B·D) gather (:func:`~crfiqa_kernels.operands.target_cosine`), the family's ``τ_i`` turns it
into ``z_iy``, and ``ℓ_i = logaddexp(lse_neg_i, z_iy) − z_iy``; autograd differentiates all of it,
so the target column's gradient, the margins' and the norms' come from autograd, and the kernels
receive ``∂L/∂lse_neg_i``. The embeddings are normalized before them (:mod:`.operands`), by PyTorch
autograd (``ê = E / max(‖E‖, 1e-12)`` gives ``∂/∂E = (∂/∂ê − ê (ê · ∂/∂ê)) / max(‖E‖, 1e-12)``);
the class centers are never normalized into a copy: the backends read raw ``W`` with ``1 / ‖W_j‖``
and apply the Jacobian to ``dW``.

NaN/Inf policy: non-finite inputs propagate — a row whose embedding has NaN gets NaN loss and
CCS/NNCCS, a NaN class center makes every row NaN — so no finite CCS is ever silently wrong.
``check_finite=True`` raises a ValueError before any computation instead.
"""

from __future__ import annotations

import torch

from . import backends
from .backends.contract import LogitParams, accumulate_dtype
from .combine import combine_partials
from .margins import Margin, MarginFamily
from .operands import compute_dtype_of, normalize_operands, resolve_backend, target_cosine
from .reference import margin_ccs_loss_reference
from .results import ClassStats, MarginCCSOutput
from .row_loss import (
    clamp_cosine,
    labelled,
    labelled_only,
    logit_params,
    margin_row_loss,
    reduce_rows,
    target_terms,
    threshold_operand,
)
from .validation import check_inputs, check_options, check_values

Tensor = torch.Tensor


@torch.library.custom_op("crfiqa_kernels::margin_ccs_rows", mutates_args=())
def margin_ccs_rows(
    e_hat: Tensor,
    weight: Tensor,
    w_inv_norm: Tensor,
    labels: Tensor,
    threshold: Tensor,
    compute_dtype: torch.dtype,
    s: float,
    cos_clamp: float,
    negative: str,
    t: float,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-row ``(lse_neg, ccs, nnccs, nn_index)`` over the non-target logits ``s·ν(c_ij)``."""
    logits = LogitParams(s, cos_clamp, negative, threshold, t)
    partials = backends.get(backend).forward_partials(e_hat.to(compute_dtype), weight, w_inv_norm, labels, logits)
    stats = combine_partials(partials)
    return stats.lse, stats.target_cos, stats.nn_cos, stats.nn_index


@margin_ccs_rows.register_fake
def _(e_hat, weight, w_inv_norm, labels, threshold, compute_dtype, s, cos_clamp, negative, t, backend):
    rows = e_hat.new_empty(e_hat.shape[0])
    return rows, rows.clone(), rows.clone(), rows.new_empty(rows.shape, dtype=torch.int64)


@torch.library.custom_op("crfiqa_kernels::margin_ccs_rows_backward", mutates_args=())
def margin_ccs_rows_backward(
    e_hat: Tensor,
    weight: Tensor,
    w_inv_norm: Tensor,
    labels: Tensor,
    threshold: Tensor,
    lse_neg: Tensor,
    row_grad: Tensor,
    compute_dtype: torch.dtype,
    s: float,
    cos_clamp: float,
    negative: str,
    t: float,
    backend: str,
) -> tuple[Tensor, Tensor]:
    """``(dê, dW)`` of the non-target logits for the upstream ``row_grad = ∂L/∂lse_neg``:
    ``∂L/∂c_ij = ∂L/∂lse_neg_i · exp(z_ij − lse_neg_i) · s·ν'(c_ij)`` for ``j ≠ y_i`` (the derivative of
    a log-sum-exp is the softmax of its terms); DESIGN's ``g_i·p_ij·s·ν'`` since
    ``∂ℓ_i/∂lse_neg_i = 1 − p_iy`` and ``p_ij = (1 − p_iy)·exp(z_ij − lse_neg_i)``."""
    logits = LogitParams(s, cos_clamp, negative, threshold, t)
    d_e_hat, d_weight = backends.get(backend).backward(
        e_hat.to(compute_dtype), weight, w_inv_norm, labels, logits, lse_neg, row_grad
    )
    return d_e_hat.to(e_hat.dtype), d_weight


@margin_ccs_rows_backward.register_fake
def _(
    e_hat, weight, w_inv_norm, labels, threshold, lse_neg, row_grad, compute_dtype, s, cos_clamp, negative, t, backend
):
    return torch.empty_like(e_hat), torch.empty_like(weight)


def _setup_context(ctx, inputs, output):
    e_hat, weight, w_inv_norm, labels, threshold, *options = inputs
    ctx.save_for_backward(e_hat, weight, w_inv_norm, labels, threshold, output[0])
    ctx.options = options


def _backward(ctx, grad_lse_neg, grad_ccs, grad_nnccs, grad_nn_index):
    e_hat, weight, w_inv_norm, labels, threshold, lse_neg = ctx.saved_tensors
    # Ignored rows have no loss and no gradient, whatever flows in; nor has a row whose label names
    # no class (only with validate=False): its loss is NaN, and so may be what flows in.
    row_grad = labelled_only(grad_lse_neg, labelled(labels) & (labels < weight.shape[0]))
    d_e_hat, d_weight = margin_ccs_rows_backward(
        e_hat, weight, w_inv_norm, labels, threshold, lse_neg, row_grad, *ctx.options
    )
    return d_e_hat, d_weight, None, None, None, None, None, None, None, None, None


margin_ccs_rows.register_autograd(_backward, setup_context=_setup_context)


def _check_values(embeddings, weight, labels, margin=None, *, validate, check_finite):
    values = validate and not torch.compiler.is_compiling()
    if margin is not None:
        margin.check_batch(embeddings.shape[0], embeddings.device, values=values)
    if values:
        check_values(embeddings, weight, labels, check_finite=check_finite)


def margin_ccs_loss(
    embeddings: Tensor,
    weight: Tensor,
    labels: Tensor,
    margin: MarginFamily | None = None,
    *,
    reduction: str = "mean",
    margin_grad: str = "exact",
    interclass_filter: float | None = None,
    backend: str = "auto",
    validate: bool = True,
    check_finite: bool = False,
) -> MarginCCSOutput:
    """Margin softmax cross-entropy with CCS / NNCCS, never materializing ``B × C`` (DESIGN §2).

    Args:
        embeddings: (B, D) float tensor (raw, not normalized).
        weight: (C, D) class centers, one row per class, C ≥ 2.
        labels: (B,) integer tensor in ``[-1, C)``; ``-1`` marks an ignored row.
        margin: any :class:`~crfiqa_kernels.margins.MarginFamily` (ArcFace s=64, m=0.5 by default).
        reduction: ``"mean"`` over labelled rows (0 if none), ``"sum"`` or ``"none"`` (per row).
        margin_grad: ``"exact"`` (autograd through the family's target logit) or
            ``"straight_through"`` (the target logit's value, the plain cosine's slope ``s``).
        interclass_filter: PartialFC's inter-class filter ``t`` in (−1, 1]: negatives with
            ``c_ij > t`` count as cosine 0 and get no gradient (None: off).
        backend: ``"auto"``, ``"chunked"``, ``"triton"``, ``"cuda"`` or ``"reference"``.
        validate: check label values (a host synchronization); off while ``torch.compile`` traces.
        check_finite: raise on NaN/Inf inputs (otherwise they propagate to NaN outputs).

    Returns:
        ``MarginCCSOutput(loss, ccs, nnccs, nn_index)``; only ``loss`` is differentiable.
    """
    margin = Margin() if margin is None else margin
    check_inputs(embeddings, weight, labels, labels_required=True)
    check_options(margin, reduction, margin_grad, interclass_filter)
    name = resolve_backend(backend, embeddings.device)
    compute_dtype = compute_dtype_of(embeddings)
    _check_values(embeddings, weight, labels, margin, validate=validate, check_finite=check_finite)
    if name == "reference":
        return margin_ccs_loss_reference(
            embeddings.to(compute_dtype),
            weight,
            labels,
            margin,
            reduction=reduction,
            margin_grad=margin_grad,
            interclass_filter=interclass_filter,
        )
    e_hat, w_inv_norm = normalize_operands(embeddings, weight)
    labels = labels.long()
    valid = labelled(labels)
    target_cos = clamp_cosine(target_cosine(e_hat, weight, labels, compute_dtype), margin)
    norms = embeddings.to(accumulate_dtype(embeddings)).norm(dim=1)
    terms = target_terms(margin, target_cos, norms, valid, margin_grad)
    logits = logit_params(margin, terms, interclass_filter, labels.shape[0], labels.device)
    lse_neg, ccs, nnccs, nn_index = margin_ccs_rows(
        e_hat, weight, w_inv_norm, labels, threshold_operand(logits, labels), compute_dtype, *_scalars(logits), name
    )
    row_loss = margin_row_loss(lse_neg, terms.target_logit, valid)
    loss = reduce_rows(row_loss, valid, reduction, terms.extra_loss)
    return MarginCCSOutput(loss, ccs.detach(), nnccs.detach(), nn_index)


def _scalars(logits: LogitParams) -> tuple[float, float, str, float]:
    """The custom ops' scalar arguments ``(s, cos_clamp, negative, t)``."""
    return float(logits.s), float(logits.cos_clamp), logits.negative, float(logits.t)


# The statistics need no margin: any scale serves, the logits are not used.
_STATS_LOGITS = LogitParams(s=1.0)


def class_stats(
    embeddings: Tensor,
    weight: Tensor,
    labels: Tensor | None = None,
    *,
    backend: str = "auto",
    validate: bool = True,
    check_finite: bool = False,
) -> ClassStats:
    """Forward-only CCS / NNCCS / nn_index and the top class, without a ``B × C`` buffer.

    Without labels the top class plays the own class (see :class:`ClassStats`): one pass finds
    it, a second one the runner-up.
    """
    check_inputs(embeddings, weight, labels, labels_required=False)
    name = resolve_backend(backend, embeddings.device)
    if name == "reference":
        name = "chunked"  # statistics only: the chunked path is exact and needs no B × C buffer
    _check_values(embeddings, weight, labels, validate=validate, check_finite=check_finite)
    with torch.no_grad():
        e_hat, w_inv_norm = normalize_operands(embeddings, weight)
        compute_dtype = compute_dtype_of(embeddings)

        threshold = threshold_operand(_STATS_LOGITS, e_hat)

        def rows(row_labels):
            return margin_ccs_rows(
                e_hat, weight, w_inv_norm, row_labels, threshold, compute_dtype, *_scalars(_STATS_LOGITS), name
            )

        if labels is None:
            _, _, _, top_class = rows(torch.full_like(e_hat[:, 0], -1, dtype=torch.int64))
            _, ccs, nnccs, nn_index = rows(top_class)
            return ClassStats(ccs, nnccs, nn_index, top_class)
        labels = labels.long()
        _, ccs, nnccs, nn_index = rows(labels)
        own_wins = (ccs > nnccs) | ((ccs == nnccs) & (labels < nn_index))
        return ClassStats(ccs, nnccs, nn_index, torch.where(own_wins, labels, nn_index))
