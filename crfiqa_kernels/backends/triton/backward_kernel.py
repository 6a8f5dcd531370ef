"""Backward of the ``triton`` backend (DESIGN §2, §3.1): ``dê`` and ``dW`` with one recompute of each
cosine tile, in three GEMM-equivalents of B·C·D multiply-adds (four with the forward).

Grid: one axis of persistent programs, one per class split (:mod:`..class_splits`). A program owns
the class tiles of its split, one at a time, and so writes each row of ``dW`` exactly once, without
atomics. For a class tile j (``BLOCK_C`` classes):

1. For each batch tile i (``BLOCK_B`` rows):
   - recompute c_ij = ê_i · ŵ_j (K = D)                                     one product
   - ∂ℓ/∂c_ij of the non-target logits from ``lse`` and the row gradients (derivation below; 0 at
     the label column), stored in the compute dtype to the program's scratch, rows i of a
     (B, BLOCK_C) slice;
   - ŵ_j · ∂ℓ/∂ŵ_j = Σ_i ∂ℓ/∂c_ij c_ij, the radial part of the Jacobian, summed over the batch;
   - the tile's share of ∂ℓ/∂ê_i = Σ_j ∂ℓ/∂c_ij ŵ_j (K = BLOCK_C)             one product
     added to ``dê`` with fp32 atomics, or — when ``torch.are_deterministic_algorithms_enabled()``
     — to the program's own (B, D) slice of a (S, B, D) buffer, summed over S afterwards in a
     fixed order (each program visits its tiles in a fixed order: bitwise reproducible).
2. ∂ℓ/∂ŵ_j = Σ_i ∂ℓ/∂c_ij ê_i from the scratch, K = B, ``BLOCK_DW`` columns at a time  one product
   and the normalization Jacobian in the epilogue; each column chunk of ``dW`` stored once.

The scratch is S × B × BLOCK_C elements of the compute dtype whatever C is (S ≤ the programs that
fill the device), and stays in L2 between the two phases: a batch whose scratch would outgrow its
share of L2 (``config.scratch_rows``) is processed in passes of fewer rows, one launch each,
each pass adding its ∂ℓ/∂W to the previous ones'. That sum is exact algebra: ∂ℓ/∂ŵ_j and the radial
sum ŵ_j · ∂ℓ/∂ŵ_j are both sums over the rows, and the Jacobian is linear in them. Between the phases
(and before the next tile overwrites the scratch) the program's threads meet at a barrier, which
also makes its global stores visible to all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .. import class_splits
from ..contract import LogitParams, accumulate_dtype
from .common import (
    LOG2E,
    TL_DTYPES,
    check_operands,
    clamp_cosine,
    cosine_tile,
    launch_arguments,
    negative_slope,
    negative_value,
    to_acc,
)
from .config import BackwardConfig
from .interpreter import dot_operand, emulates_bf16, store_value


@dataclass(frozen=True)
class BackwardPlan:
    """The launches of a backward: ``grid`` (one axis, one program per split), its class splits,
    the row ranges of its passes (one launch each) and the elements of its buffers: the ∂ℓ/∂c
    scratch (compute dtype) and the partial ``dê`` of a pass (accumulate dtype; the whole (B, D)
    output on the atomic path, S buffers of (rows of a pass, D) on the deterministic path)."""

    grid: tuple[int]
    splits: class_splits.ClassSplits
    passes: tuple[tuple[int, int], ...]
    scratch_elements: int
    d_e_hat_elements: int


def plan_backward(batch: int, classes: int, dim: int, config: BackwardConfig, deterministic: bool) -> BackwardPlan:
    """The grid, class splits, row passes and buffer sizes of a backward (at most one program per
    class tile, so axis 0 stays below CUDA's 2³¹ − 1 for any C < 2³¹ · 16)."""
    splits = class_splits.plan(class_splits.tile_count(classes, config.block_c), config.splits)
    rows = min(batch, config.rows_per_pass or batch)
    passes = tuple((start, min(start + rows, batch)) for start in range(0, batch, rows))
    return BackwardPlan(
        grid=(splits.count,),
        splits=splits,
        passes=passes,
        scratch_elements=splits.count * rows * config.block_c,
        d_e_hat_elements=splits.count * rows * dim if deterministic else batch * dim,
    )


def launch_backward(
    e_hat,
    weight,
    w_inv_norm,
    labels_local,
    logits: LogitParams,
    lse,
    row_grad,
    config: BackwardConfig,
    deterministic: bool,
):
    """Launches the backward kernel; the only caller of ``_backward_kernel``. Returns
    ``(dê float32 — float64 for float64 —, dW in weight's dtype)``."""
    check_operands(e_hat, weight, w_inv_norm, labels_local)
    batch, dim = e_hat.shape
    classes = weight.shape[0]
    for name, tensor in (("lse", lse), ("row_grad", row_grad)):
        if tensor.shape != (batch,) or not tensor.dtype.is_floating_point or tensor.device != e_hat.device:
            raise ValueError(
                f"{name} must be a float tensor of shape ({batch},) on {e_hat.device}, "
                f"got {tensor.dtype} of shape {tuple(tensor.shape)} on {tensor.device}"
            )
    plan = plan_backward(batch, classes, dim, config, deterministic)
    acc_dtype = accumulate_dtype(e_hat)
    w_inv_norm, lse, row_grad = (t.to(acc_dtype).contiguous() for t in (w_inv_norm, lse, row_grad))
    labels_local = labels_local.contiguous()

    scratch = torch.empty(plan.scratch_elements, dtype=e_hat.dtype, device=e_hat.device)
    d_e_hat = torch.zeros(batch, dim, dtype=acc_dtype, device=e_hat.device)
    d_e_partial = torch.empty(plan.d_e_hat_elements if deterministic else 0, dtype=acc_dtype, device=e_hat.device)
    # Later passes add to dW: a half-precision W gets an fp32 sum, rounded once at the end.
    sums_in_fp32 = len(plan.passes) > 1 and weight.dtype in (torch.float16, torch.bfloat16)
    d_weight = torch.empty(weight.shape, dtype=torch.float32 if sums_in_fp32 else weight.dtype, device=weight.device)
    for number, (start, stop) in enumerate(plan.passes):
        rows = stop - start
        if deterministic:
            d_e_out = d_e_partial[: plan.splits.count * rows * dim].zero_()
        else:
            d_e_out = d_e_hat[start:stop]
        _backward_kernel[plan.grid](
            e_ptr=e_hat[start:stop],
            w_ptr=weight,
            w_inv_norm_ptr=w_inv_norm,
            labels_ptr=labels_local[start:stop],
            lse_ptr=lse[start:stop],
            row_grad_ptr=row_grad[start:stop],
            d_e_ptr=d_e_out,
            d_w_ptr=d_weight,
            scratch_ptr=scratch,
            batch=rows,
            classes=classes,
            dim=dim,
            class_tiles=plan.splits.tiles,
            tiles_per_split=plan.splits.tiles_per_split,
            d_w_strides=(d_weight.stride(0), d_weight.stride(1)),
            BLOCK_DW=config.block_dw,
            DETERMINISTIC=deterministic,
            ADD_TO_D_W=number > 0,
            OUT_DTYPE=TL_DTYPES[d_weight.dtype],
            EMULATE_BF16_OUT=emulates_bf16(d_weight.dtype),
            **launch_arguments(
                e_hat, weight, w_inv_norm, logits, (config.block_b, config.block_c, config.block_d), config
            ),
        )
        if deterministic:
            # The ordered reduction of the deterministic path: a fixed-order sum over the splits.
            d_e_hat[start:stop] = d_e_out.view(-1, rows, dim).sum(dim=0)
    return d_e_hat, d_weight.to(weight.dtype)


@triton.jit
def _backward_kernel(
    e_ptr,
    w_ptr,
    w_inv_norm_ptr,
    labels_ptr,
    threshold_ptr,
    lse_ptr,
    row_grad_ptr,
    d_e_ptr,
    d_w_ptr,
    scratch_ptr,
    batch,
    classes,
    dim,
    class_tiles,
    tiles_per_split,
    strides,
    d_w_strides,
    scale: tl.float64,
    cos_low: tl.float64,
    cos_high: tl.float64,
    negative_t: tl.float64,
    BLOCKS: tl.constexpr,
    PRODUCT: tl.constexpr,
    NEGATIVE: tl.constexpr,
    BLOCK_DW: tl.constexpr,
    DETERMINISTIC: tl.constexpr,
    ADD_TO_D_W: tl.constexpr,
    OUT_DTYPE: tl.constexpr,
    EMULATE_BF16_OUT: tl.constexpr,
):
    # The grouped arguments (DESIGN §7): strides (ê's rows and columns, W's; dW's), blocks
    # (BLOCK_B, BLOCK_C, BLOCK_D), the tile product's facts (common.TileMeta.product).
    BLOCK_B: tl.constexpr = BLOCKS[0]
    BLOCK_C: tl.constexpr = BLOCKS[1]
    BLOCK_D: tl.constexpr = BLOCKS[2]
    COMPUTE_DTYPE: tl.constexpr = PRODUCT[0]
    DOT_DTYPE: tl.constexpr = PRODUCT[1]
    ACC_DTYPE: tl.constexpr = PRODUCT[2]
    EMULATE_BF16: tl.constexpr = PRODUCT[3]
    INPUT_PRECISION: tl.constexpr = PRODUCT[4]
    stride_eb, stride_ed, stride_wc, stride_wd = strides
    stride_dwc, stride_dwd = d_w_strides
    split = tl.program_id(0)
    offs_b = tl.arange(0, BLOCK_B)
    offs_c = tl.arange(0, BLOCK_C)
    scale = to_acc(scale, ACC_DTYPE)
    cos_low, cos_high = to_acc(cos_low, ACC_DTYPE), to_acc(cos_high, ACC_DTYPE)
    negative_t = to_acc(negative_t, ACC_DTYPE)
    scratch_ptr += tl.cast(split, tl.int64) * batch * BLOCK_C
    if DETERMINISTIC:
        d_e_ptr += tl.cast(split, tl.int64) * batch * dim

    # Loop bounds are run-time scalars (the interpreter takes no tensor bounds); the last split
    # may hold fewer tiles than the others.
    for step in range(tiles_per_split):
        tile = split * tiles_per_split + step
        if tile < class_tiles:
            cols = tile * BLOCK_C + offs_c
            col_mask = cols < classes
            w_inv_norm = tl.load(w_inv_norm_ptr + cols, mask=col_mask, other=0.0)
            # Base pointers of the tile (64-bit); offsets inside it stay 32-bit.
            w_tile_ptr = w_ptr + tl.cast(tile * BLOCK_C, tl.int64) * stride_wc
            d_w_tile_ptr = d_w_ptr + tl.cast(tile * BLOCK_C, tl.int64) * stride_dwc

            # Phase 1: ∂ℓ/∂c of the tile, row block by row block; dê's share and the radial sums.
            radial = tl.zeros((BLOCK_C,), ACC_DTYPE)
            for row_start in range(0, batch, BLOCK_B):
                rows = row_start + offs_b
                row_mask = rows < batch
                labels = tl.load(labels_ptr + rows, mask=row_mask, other=-1)
                lse = tl.load(lse_ptr + rows, mask=row_mask, other=0.0)
                row_grad = tl.load(row_grad_ptr + rows, mask=row_mask, other=0.0)
                e_block_ptr = e_ptr + tl.cast(row_start, tl.int64) * stride_eb
                raw_cos = cosine_tile(
                    e_block_ptr,
                    w_tile_ptr,
                    w_inv_norm_ptr + tile * BLOCK_C,
                    row_mask,
                    col_mask,
                    dim,
                    strides,
                    BLOCKS,
                    PRODUCT,
                )
                cos = clamp_cosine(raw_cos, cos_low, cos_high)
                is_target = (cols[None, :] == labels[:, None]) & col_mask[None, :]

                # ∂L/∂c_ij = g_i · exp(z_ij − lse_i) · s·ν'(c_ij) for j ≠ y_i, z = s·ν(c) (log2 units:
                # exp(z − lse) = exp2((z − lse)·log2 e)): the softmax term of the non-target logit.
                # The label column, rows and classes outside the masks contribute nothing.
                if NEGATIVE == 0:
                    p = tl.exp2(cos * (scale * LOG2E) - (lse * LOG2E)[:, None])
                    d_logit = row_grad[:, None] * p
                else:
                    threshold = tl.load(threshold_ptr + rows, mask=row_mask, other=0.0).to(ACC_DTYPE)
                    nu = negative_value(cos, threshold, negative_t, NEGATIVE)
                    p = tl.exp2(nu * (scale * LOG2E) - (lse * LOG2E)[:, None])
                    d_logit = row_grad[:, None] * p * negative_slope(cos, threshold, negative_t, NEGATIVE)
                keep = row_mask[:, None] & col_mask[None, :] & ~is_target
                d_cos = tl.where(keep, scale * d_logit, 0.0)

                # The radial part of the Jacobian needs ŵ_j · ∂ℓ/∂ŵ_j = Σ_i ∂ℓ/∂c_ij (ê_i · ŵ_j)
                # = Σ_i ∂ℓ/∂c_ij c_ij (the cosine before the clamp): a sum over the batch.
                radial += tl.sum(d_cos * raw_cos, axis=0)
                d_cos_operand = dot_operand(d_cos, COMPUTE_DTYPE, DOT_DTYPE, EMULATE_BF16)
                tl.store(
                    scratch_ptr + (rows[:, None] * BLOCK_C + offs_c[None, :]),
                    store_value(d_cos_operand, COMPUTE_DTYPE, EMULATE_BF16),
                    mask=row_mask[:, None],
                )

                # ∂ℓ/∂ê_i = Σ_j ∂ℓ/∂c_ij ŵ_j, this tile's share, BLOCK_D columns at a time (ŵ formed
                # before the rounding: float16 holds no ∂ℓ/∂c_ij / ‖W_j‖ for a small W_j).
                d_e_block_ptr = d_e_ptr + tl.cast(row_start, tl.int64) * dim
                for k in range(0, dim, BLOCK_D):
                    d = k + tl.arange(0, BLOCK_D)
                    d_mask = d < dim
                    w = tl.load(
                        w_tile_ptr + (offs_c[:, None] * stride_wc + d[None, :] * stride_wd),
                        mask=col_mask[:, None] & d_mask[None, :],
                        other=0.0,
                    )
                    w_hat = w.to(ACC_DTYPE) * w_inv_norm[:, None]
                    d_e = tl.dot(
                        d_cos_operand,
                        dot_operand(w_hat, COMPUTE_DTYPE, DOT_DTYPE, EMULATE_BF16),
                        input_precision=INPUT_PRECISION,
                        out_dtype=ACC_DTYPE,
                    )
                    d_e_ptrs = d_e_block_ptr + (offs_b[:, None] * dim + d[None, :])
                    d_e_mask = row_mask[:, None] & d_mask[None, :]
                    if DETERMINISTIC:  # the program's own slice: no other program writes it
                        tl.store(d_e_ptrs, tl.load(d_e_ptrs, mask=d_e_mask, other=0.0) + d_e, mask=d_e_mask)
                    else:
                        tl.atomic_add(d_e_ptrs, d_e, mask=d_e_mask, sem="relaxed")
            tl.debug_barrier()  # the scratch is complete and visible to every thread of the program

            # Phase 2: ∂ℓ/∂ŵ_j = Σ_i ∂ℓ/∂c_ij ê_i (K = B) from the scratch, BLOCK_DW columns at a time,
            # then the normalization Jacobian
            #     ∂ℓ/∂W_j = (∂ℓ/∂ŵ_j − ŵ_j (ŵ_j · ∂ℓ/∂ŵ_j)) / max(‖W_j‖, 1e-12).
            for k in range(0, dim, BLOCK_DW):
                dw_cols = k + tl.arange(0, BLOCK_DW)
                dw_mask = dw_cols < dim
                d_w_hat = tl.zeros((BLOCK_C, BLOCK_DW), ACC_DTYPE)
                for row_start in range(0, batch, BLOCK_B):
                    rows = row_start + offs_b
                    row_mask = rows < batch
                    d_cos_operand = tl.load(
                        scratch_ptr + (rows[:, None] * BLOCK_C + offs_c[None, :]), mask=row_mask[:, None], other=0.0
                    )
                    e_chunk = tl.load(
                        e_ptr + (tl.cast(rows, tl.int64)[:, None] * stride_eb + dw_cols[None, :] * stride_ed),
                        mask=row_mask[:, None] & dw_mask[None, :],
                        other=0.0,
                    )
                    d_w_hat = tl.dot(
                        tl.trans(d_cos_operand.to(DOT_DTYPE)),
                        dot_operand(e_chunk, COMPUTE_DTYPE, DOT_DTYPE, EMULATE_BF16),
                        d_w_hat,
                        input_precision=INPUT_PRECISION,
                        out_dtype=ACC_DTYPE,
                    )
                w_chunk = tl.load(
                    w_tile_ptr + (offs_c[:, None] * stride_wc + dw_cols[None, :] * stride_wd),
                    mask=col_mask[:, None] & dw_mask[None, :],
                    other=0.0,
                ).to(ACC_DTYPE)
                w_hat = w_chunk * w_inv_norm[:, None]
                d_w = (d_w_hat - w_hat * radial[:, None]) * w_inv_norm[:, None]
                d_w_ptrs = d_w_tile_ptr + (offs_c[:, None] * stride_dwc + dw_cols[None, :] * stride_dwd)
                d_w_mask = col_mask[:, None] & dw_mask[None, :]
                if ADD_TO_D_W:
                    # A later pass over the rows (dW is then fp32 or fp64). No other program writes
                    # these rows and the passes are consecutive launches, so the order of the sums
                    # is fixed; the add happens in L2 and holds no tile of dW in registers.
                    tl.atomic_add(d_w_ptrs, d_w, mask=d_w_mask, sem="relaxed")
                else:
                    tl.store(d_w_ptrs, store_value(d_w, OUT_DTYPE, EMULATE_BF16_OUT), mask=d_w_mask)
            tl.debug_barrier()  # phase 2 has read the scratch before the next tile overwrites it
