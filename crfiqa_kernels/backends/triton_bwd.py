"""Backward of the ``triton`` backend (DESIGN §2–3): ``dê`` and ``dW`` from recomputed tiles.

Grid: (column chunks of dW, class splits); the chunks of one class tile run side by side and share
its cosine tiles through L2. A program owns ``BLOCK_DW`` columns of ``dW`` for the class tiles of its
split. For each class tile it loops over all batch tiles, recomputes the cosines, forms ∂ℓ/∂c with
the final ``lse`` and accumulates ∂ℓ/∂ŵ for the tile in registers — ``dW`` needs no atomics — then
applies the normalization Jacobian in the epilogue. Its share of ``dê`` goes either

- to one (B, D) float32 buffer with atomic adds (the fast path), or
- when ``torch.are_deterministic_algorithms_enabled()``, to the split's own (B, D) slice of a
  (S, B, D) buffer by plain read-modify-write (no other program touches that slice), summed over
  the splits afterwards in a fixed order.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .contract import MARGIN_GRADS
from .triton_config import BackwardConfig, interpreting
from .triton_fwd import (
    LOG2E,
    TL_DTYPES,
    check_operands,
    clamp_cosine,
    class_split_tiles,
    cosine_tile,
    dot_operand,
    margin_phi,
    margin_phi_grad,
    round_to_bf16,
    tile_meta,
)


def launch_backward(e_hat, weight, w_inv_norm, labels_local, margin, lse, row_grad, margin_grad,
                    config: BackwardConfig, deterministic: bool):
    """Launches the backward kernel; the only caller of ``_backward_kernel``. Returns
    ``(dê float32 — float64 for float64 —, dW in weight's dtype)``."""
    check_operands(e_hat, weight, w_inv_norm, labels_local)
    if margin_grad not in MARGIN_GRADS:
        raise ValueError(f"margin_grad must be one of {MARGIN_GRADS}, got {margin_grad!r}")
    batch, dim = e_hat.shape
    classes = weight.shape[0]
    for name, tensor in (("lse", lse), ("row_grad", row_grad)):
        if tensor.shape != (batch,) or not tensor.dtype.is_floating_point or tensor.device != e_hat.device:
            raise ValueError(f"{name} must be a float tensor of shape ({batch},) on {e_hat.device}, "
                             f"got {tensor.dtype} of shape {tuple(tensor.shape)} on {tensor.device}")
    meta = tile_meta(e_hat, margin)
    acc_dtype = torch.float64 if e_hat.dtype == torch.float64 else torch.float32
    tiles_per_split, splits = class_split_tiles(classes, config.block_c, config.splits)
    w_inv_norm, lse, row_grad = (t.to(acc_dtype).contiguous() for t in (w_inv_norm, lse, row_grad))
    labels_local = labels_local.contiguous()

    d_e_hat = torch.zeros((splits if deterministic else 1, batch, dim), dtype=acc_dtype, device=e_hat.device)
    d_weight = torch.empty_like(weight)
    grid = (triton.cdiv(dim, config.block_dw), splits)
    _backward_kernel[grid](
        e_hat, weight, w_inv_norm, labels_local, lse, row_grad, d_e_hat, d_weight,
        batch, classes, dim,
        e_hat.stride(0), e_hat.stride(1), weight.stride(0), weight.stride(1),
        d_weight.stride(0), d_weight.stride(1),
        tiles_per_split,
        BLOCK_B=config.block_b, BLOCK_C=config.block_c, BLOCK_D=config.block_d, BLOCK_DW=config.block_dw,
        EXACT_MARGIN_GRAD=margin_grad == "exact", DETERMINISTIC=deterministic,
        OUT_DTYPE=TL_DTYPES[weight.dtype],
        EMULATE_BF16_OUT=interpreting() and weight.dtype == torch.bfloat16,
        **meta.kwargs(),
        num_warps=config.num_warps, num_stages=config.num_stages,
    )
    # The ordered reduction of the deterministic path: a fixed-order sum over the split dimension.
    return (d_e_hat.sum(dim=0) if deterministic else d_e_hat[0]), d_weight


@triton.jit
def _backward_kernel(
    e_ptr, w_ptr, w_inv_norm_ptr, labels_ptr, lse_ptr, row_grad_ptr, d_e_ptr, d_w_ptr,
    batch, classes, dim,
    stride_eb, stride_ed, stride_wc, stride_wd, stride_dwc, stride_dwd,
    tiles_per_split,
    BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DW: tl.constexpr,
    EXACT_MARGIN_GRAD: tl.constexpr, DETERMINISTIC: tl.constexpr,
    OUT_DTYPE: tl.constexpr, EMULATE_BF16_OUT: tl.constexpr,
    COMPUTE_DTYPE: tl.constexpr, DOT_DTYPE: tl.constexpr, ACC_DTYPE: tl.constexpr, EMULATE_BF16: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    SCALE: tl.constexpr, M1: tl.constexpr, M2: tl.constexpr, M3: tl.constexpr,
    COS_M2: tl.constexpr, SIN_M2: tl.constexpr, MULTIPLICATIVE: tl.constexpr,
):
    split = tl.program_id(1)
    dw_cols = tl.program_id(0) * BLOCK_DW + tl.arange(0, BLOCK_DW)
    dw_mask = dw_cols < dim
    offs_b = tl.arange(0, BLOCK_B)
    offs_c = tl.arange(0, BLOCK_C)
    if DETERMINISTIC:
        d_e_ptr += tl.cast(split, tl.int64) * batch * dim

    first_tile = split * tiles_per_split
    last_tile = tl.minimum(first_tile + tiles_per_split, tl.cdiv(classes, BLOCK_C))
    for tile in range(first_tile, last_tile):
        cols = tile * BLOCK_C + offs_c
        col_mask = cols < classes
        w_inv_norm = tl.load(w_inv_norm_ptr + cols, mask=col_mask, other=0.0)
        # Base pointers of the tile (64-bit); offsets inside it stay 32-bit.
        w_tile_ptr = w_ptr + tl.cast(tile * BLOCK_C, tl.int64) * stride_wc
        d_w_tile_ptr = d_w_ptr + tl.cast(tile * BLOCK_C, tl.int64) * stride_dwc
        d_w_hat = tl.zeros((BLOCK_C, BLOCK_DW), ACC_DTYPE)
        radial = tl.zeros((BLOCK_C,), ACC_DTYPE)
        for row_start in range(0, batch, BLOCK_B):
            rows = row_start + offs_b
            row_mask = rows < batch
            labels = tl.load(labels_ptr + rows, mask=row_mask, other=-1)
            lse = tl.load(lse_ptr + rows, mask=row_mask, other=0.0)
            row_grad = tl.load(row_grad_ptr + rows, mask=row_mask, other=0.0)
            e_block_ptr = e_ptr + tl.cast(row_start, tl.int64) * stride_eb
            d_e_block_ptr = d_e_ptr + tl.cast(row_start, tl.int64) * dim
            raw_cos = cosine_tile(
                e_block_ptr, w_tile_ptr, w_inv_norm_ptr + tile * BLOCK_C, row_mask, col_mask, dim,
                stride_eb, stride_ed, stride_wc, stride_wd,
                BLOCK_B, BLOCK_C, BLOCK_D, COMPUTE_DTYPE, DOT_DTYPE, ACC_DTYPE, EMULATE_BF16, INPUT_PRECISION,
            )
            cos = clamp_cosine(raw_cos)
            is_target = (cols[None, :] == labels[:, None]) & col_mask[None, :]
            target = tl.sum(tl.where(is_target, cos, 0.0), axis=1)

            # p_ij = exp(z_ij − lse_i) with z = s·c, and s·φ(c) at the target (log2 units).
            phi = margin_phi(target, M1, M2, M3, COS_M2, SIN_M2, MULTIPLICATIVE)
            logits = tl.where(is_target, (SCALE * LOG2E) * phi[:, None], cos * (SCALE * LOG2E))
            p = tl.exp2(logits - (lse * LOG2E)[:, None])

            # ∂ℓ/∂z_ij = g_i (p_ij − [j = y_i]);  ∂ℓ/∂c_ij = s·∂ℓ/∂z_ij, times φ'(c_iy) at the target
            # (φ' = 1 for the straight-through margin, applied as if under no_grad). Rows and
            # classes outside the masks contribute nothing.
            d_logit = row_grad[:, None] * (p - is_target.to(ACC_DTYPE))
            if EXACT_MARGIN_GRAD:
                slope = margin_phi_grad(target, M1, M2, COS_M2, SIN_M2, MULTIPLICATIVE)
                d_logit = tl.where(is_target, d_logit * slope[:, None], d_logit)
            d_cos = tl.where(row_mask[:, None] & col_mask[None, :], SCALE * d_logit, 0.0)

            # ∂ℓ/∂ŵ_j = Σ_i ∂ℓ/∂c_ij ê_i, for this program's columns of ŵ. The radial part of the
            # Jacobian needs ŵ_j · ∂ℓ/∂ŵ_j = Σ_i ∂ℓ/∂c_ij (ê_i · ŵ_j) = Σ_i ∂ℓ/∂c_ij c_ij (the cosine
            # before the clamp): a sum over the batch, so no program needs the other columns.
            radial += tl.sum(d_cos * raw_cos, axis=0)
            d_cos_operand = dot_operand(d_cos, COMPUTE_DTYPE, DOT_DTYPE, EMULATE_BF16)
            e_chunk = tl.load(
                e_block_ptr + (offs_b[:, None] * stride_eb + dw_cols[None, :] * stride_ed),
                mask=row_mask[:, None] & dw_mask[None, :], other=0.0,
            )
            d_w_hat = tl.dot(
                tl.trans(d_cos_operand),
                dot_operand(e_chunk, COMPUTE_DTYPE, DOT_DTYPE, EMULATE_BF16),
                d_w_hat,
                input_precision=INPUT_PRECISION,
            )

            # ∂ℓ/∂ê_i = Σ_j ∂ℓ/∂c_ij ŵ_j, this tile's share, BLOCK_D columns at a time (ŵ formed
            # before the rounding: float16 holds no ∂ℓ/∂c_ij / ‖W_j‖ for a small W_j).
            for sub in tl.static_range(0, BLOCK_DW, BLOCK_D):
                d = tl.program_id(0) * BLOCK_DW + sub + tl.arange(0, BLOCK_D)
                d_mask = d < dim
                w_sub = tl.load(
                    w_tile_ptr + (offs_c[:, None] * stride_wc + d[None, :] * stride_wd),
                    mask=col_mask[:, None] & d_mask[None, :], other=0.0,
                )
                w_hat_sub = w_sub.to(ACC_DTYPE) * w_inv_norm[:, None]
                d_e = tl.dot(d_cos_operand, dot_operand(w_hat_sub, COMPUTE_DTYPE, DOT_DTYPE, EMULATE_BF16),
                             input_precision=INPUT_PRECISION, out_dtype=ACC_DTYPE)
                d_e_ptrs = d_e_block_ptr + (offs_b[:, None] * dim + d[None, :])
                d_e_mask = row_mask[:, None] & d_mask[None, :]
                if DETERMINISTIC:
                    tl.store(d_e_ptrs, tl.load(d_e_ptrs, mask=d_e_mask, other=0.0) + d_e, mask=d_e_mask)
                else:
                    tl.atomic_add(d_e_ptrs, d_e, mask=d_e_mask, sem="relaxed")

        # Normalization Jacobian: ∂ℓ/∂W_j = (∂ℓ/∂ŵ_j − ŵ_j (ŵ_j · ∂ℓ/∂ŵ_j)) / max(‖W_j‖, 1e-12).
        w_chunk = tl.load(
            w_tile_ptr + (offs_c[:, None] * stride_wc + dw_cols[None, :] * stride_wd),
            mask=col_mask[:, None] & dw_mask[None, :], other=0.0,
        ).to(ACC_DTYPE)
        w_hat = w_chunk * w_inv_norm[:, None]
        d_w = (d_w_hat - w_hat * radial[:, None]) * w_inv_norm[:, None]
        if EMULATE_BF16_OUT:
            d_w = round_to_bf16(d_w.to(tl.float32))
        tl.store(
            d_w_tile_ptr + (offs_c[:, None] * stride_dwc + dw_cols[None, :] * stride_dwd),
            d_w.to(OUT_DTYPE), mask=col_mask[:, None] & dw_mask[None, :],
        )
        if DETERMINISTIC:
            # The next class tile reads back this tile's dê stores, possibly from other threads.
            tl.debug_barrier()
