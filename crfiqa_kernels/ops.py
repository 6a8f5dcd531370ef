"""The public ops: validation, the combine step and the autograd custom ops.

This is the only module that registers ``torch.library`` custom ops:

``crfiqa_kernels::margin_ccs_rows``           forward partials of the chosen backend + combine
                                              → per-row loss, lse, CCS, NNCCS, nn_index
``crfiqa_kernels::margin_ccs_rows_backward``  the backend's backward → dê, dW

Both have fake implementations, so ``torch.compile(fullgraph=True)`` traces a training step
through them. The embeddings are normalized before them (:mod:`.operands`), by PyTorch autograd
(``ê = E / max(‖E‖, 1e-12)`` gives ``∂/∂E = (∂/∂ê − ê (ê · ∂/∂ê)) / max(‖E‖, 1e-12)``); the class
centers are never normalized into a copy: the backends read raw ``W`` with ``1 / ‖W_j‖`` and
apply the Jacobian to ``dW``.

NaN/Inf policy: non-finite inputs propagate — a row whose embedding has NaN gets NaN loss and
CCS/NNCCS, a NaN class center makes every row NaN — so no finite CCS is ever silently wrong.
``check_finite=True`` raises a ValueError before any computation instead.
"""

from __future__ import annotations

import torch

from . import backends
from .combine import combine_partials
from .margins import Margin
from .operands import compute_dtype_of, normalize_operands, resolve_backend
from .reference import margin_ccs_loss_reference
from .results import ClassStats, MarginCCSOutput
from .row_loss import labelled, labelled_only, margin_row_loss, reduce_rows
from .validation import check_inputs, check_options, check_values

Tensor = torch.Tensor


@torch.library.custom_op("crfiqa_kernels::margin_ccs_rows", mutates_args=())
def margin_ccs_rows(
    e_hat: Tensor,
    weight: Tensor,
    w_inv_norm: Tensor,
    labels: Tensor,
    compute_dtype: torch.dtype,
    s: float,
    m1: float,
    m2: float,
    m3: float,
    margin_grad: str,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Per-row ``(loss, lse, ccs, nnccs, nn_index)``; ``margin_grad`` is used by the backward."""
    margin = Margin(s, m1, m2, m3)
    partials = backends.get(backend).forward_partials(e_hat.to(compute_dtype), weight, w_inv_norm, labels, margin)
    stats = combine_partials(partials)
    row_loss = margin_row_loss(stats.lse, stats.target_cos, labelled(labels), margin)
    return row_loss, stats.lse, stats.target_cos, stats.nn_cos, stats.nn_index


@margin_ccs_rows.register_fake
def _(e_hat, weight, w_inv_norm, labels, compute_dtype, s, m1, m2, m3, margin_grad, backend):
    rows = e_hat.new_empty(e_hat.shape[0])
    return rows, rows.clone(), rows.clone(), rows.clone(), rows.new_empty(rows.shape, dtype=torch.int64)


@torch.library.custom_op("crfiqa_kernels::margin_ccs_rows_backward", mutates_args=())
def margin_ccs_rows_backward(
    e_hat: Tensor,
    weight: Tensor,
    w_inv_norm: Tensor,
    labels: Tensor,
    lse: Tensor,
    row_grad: Tensor,
    compute_dtype: torch.dtype,
    s: float,
    m1: float,
    m2: float,
    m3: float,
    margin_grad: str,
    backend: str,
) -> tuple[Tensor, Tensor]:
    """``(dê, dW)`` for the upstream per-row gradient ``row_grad`` (DESIGN §2, backward)."""
    d_e_hat, d_weight = backends.get(backend).backward(
        e_hat.to(compute_dtype), weight, w_inv_norm, labels, Margin(s, m1, m2, m3), lse, row_grad, margin_grad
    )
    return d_e_hat.to(e_hat.dtype), d_weight


@margin_ccs_rows_backward.register_fake
def _(e_hat, weight, w_inv_norm, labels, lse, row_grad, compute_dtype, s, m1, m2, m3, margin_grad, backend):
    return torch.empty_like(e_hat), torch.empty_like(weight)


def _setup_context(ctx, inputs, output):
    e_hat, weight, w_inv_norm, labels, *options = inputs
    ctx.save_for_backward(e_hat, weight, w_inv_norm, labels, output[1])
    ctx.options = options


def _backward(ctx, grad_loss, grad_lse, grad_ccs, grad_nnccs, grad_nn_index):
    e_hat, weight, w_inv_norm, labels, lse = ctx.saved_tensors
    # Ignored rows have no loss and no gradient, whatever flows in.
    row_grad = labelled_only(grad_loss, labelled(labels))
    d_e_hat, d_weight = margin_ccs_rows_backward(e_hat, weight, w_inv_norm, labels, lse, row_grad, *ctx.options)
    return d_e_hat, d_weight, None, None, None, None, None, None, None, None, None


margin_ccs_rows.register_autograd(_backward, setup_context=_setup_context)


def _check_values(embeddings, weight, labels, *, validate, check_finite):
    if validate and not torch.compiler.is_compiling():
        check_values(embeddings, weight, labels, check_finite=check_finite)


def margin_ccs_loss(
    embeddings: Tensor,
    weight: Tensor,
    labels: Tensor,
    margin: Margin | None = None,
    *,
    reduction: str = "mean",
    margin_grad: str = "exact",
    backend: str = "auto",
    validate: bool = True,
    check_finite: bool = False,
) -> MarginCCSOutput:
    """Margin softmax cross-entropy with CCS / NNCCS, never materializing ``B × C`` (DESIGN §2).

    Args:
        embeddings: (B, D) float tensor (raw, not normalized).
        weight: (C, D) class centers, one row per class, C ≥ 2.
        labels: (B,) integer tensor in ``[-1, C)``; ``-1`` marks an ignored row.
        margin: :class:`Margin` (ArcFace s=64, m=0.5 by default).
        reduction: ``"mean"`` over labelled rows (0 if none), ``"sum"`` or ``"none"`` (per row).
        margin_grad: ``"exact"`` (φ'(c), as autograd differentiates ArcFace) or
            ``"straight_through"`` (the margin applied under no_grad: φ' = 1).
        backend: ``"auto"``, ``"chunked"``, ``"triton"``, ``"cuda"`` or ``"reference"``.
        validate: check label values (a host synchronization); off while ``torch.compile`` traces.
        check_finite: raise on NaN/Inf inputs (otherwise they propagate to NaN outputs).

    Returns:
        ``MarginCCSOutput(loss, ccs, nnccs, nn_index)``; only ``loss`` is differentiable.
    """
    margin = Margin() if margin is None else margin
    check_inputs(embeddings, weight, labels, labels_required=True)
    check_options(margin, reduction, margin_grad)
    name = resolve_backend(backend, embeddings.device)
    compute_dtype = compute_dtype_of(embeddings)
    _check_values(embeddings, weight, labels, validate=validate, check_finite=check_finite)
    if name == "reference":
        return margin_ccs_loss_reference(
            embeddings.to(compute_dtype), weight, labels, margin, reduction=reduction, margin_grad=margin_grad
        )
    e_hat, w_inv_norm = normalize_operands(embeddings, weight)
    labels = labels.long()
    row_loss, _, ccs, nnccs, nn_index = margin_ccs_rows(
        e_hat, weight, w_inv_norm, labels, compute_dtype, *_margin_args(margin), margin_grad, name
    )
    loss = reduce_rows(row_loss, labelled(labels), reduction)
    return MarginCCSOutput(loss, ccs.detach(), nnccs.detach(), nn_index)


def _margin_args(margin: Margin) -> tuple[float, float, float, float]:
    return margin.s, margin.m1, margin.m2, margin.m3


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

        def rows(row_labels):
            return margin_ccs_rows(
                e_hat, weight, w_inv_norm, row_labels, compute_dtype, *_margin_args(Margin()), "exact", name
            )

        if labels is None:
            _, _, _, _, top_class = rows(torch.full_like(e_hat[:, 0], -1, dtype=torch.int64))
            _, _, ccs, nnccs, nn_index = rows(top_class)
            return ClassStats(ccs, nnccs, nn_index, top_class)
        labels = labels.long()
        _, _, ccs, nnccs, nn_index = rows(labels)
        own_wins = (ccs > nnccs) | ((ccs == nnccs) & (labels < nn_index))
        return ClassStats(ccs, nnccs, nn_index, torch.where(own_wins, labels, nn_index))
