"""Forward partials of the ``triton`` backend (DESIGN §3): one fused pass over the class centers.

Grid: one axis of (batch tiles × class splits) programs, batch tiles varying fastest so the
programs reading the same class tiles run side by side and share them through L2. A program walks
the class tiles of its split (:mod:`..class_splits`):

    cos   = clamp(ê_rows · (W_cols · w_inv_norm_cols)ᵀ, -1, 1)      tl.dot, fp32 accumulation
    logit = s·cos, s·φ(cos) at the label column                       (log2 units: × log2 e)
    online max / Σ exp2 of the logits, the target cosine, the running max of the negatives and its
    lowest index.

It writes one row of :class:`~.contract.Partials` per (split, row); the combine is done in PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from .. import class_splits
from ..contract import Partials, accumulate_dtype
from .common import (
    LN2,
    LOG2E,
    check_operands,
    clamp_cosine,
    cosine_tile,
    margin_phi,
    margin_scalars,
    tile_meta,
    to_acc,
)
from .config import MAX_GRID_X, ForwardConfig


@dataclass(frozen=True)
class ForwardPlan:
    """The launch of a forward: ``grid`` (one axis), the class splits it walks, its batch tiles."""

    grid: tuple[int]
    splits: class_splits.ClassSplits
    batch_tiles: int


def plan_forward(batch: int, classes: int, config: ForwardConfig) -> ForwardPlan:
    """The grid and class splits of a forward launch; the grid stays within CUDA's limit on axis 0
    (fewer splits than ``config.splits`` asks for when a batch of that many tiles would exceed it)."""
    batch_tiles = triton.cdiv(batch, config.block_b)
    splits = class_splits.plan(
        class_splits.tile_count(classes, config.block_c), min(config.splits, MAX_GRID_X // batch_tiles)
    )
    return ForwardPlan(grid=(batch_tiles * splits.count,), splits=splits, batch_tiles=batch_tiles)


def launch_forward_partials(e_hat, weight, w_inv_norm, labels_local, margin, config: ForwardConfig) -> Partials:
    """Launches the forward kernel; the only caller of ``_forward_partials_kernel``."""
    check_operands(e_hat, weight, w_inv_norm, labels_local)
    batch, dim = e_hat.shape
    classes = weight.shape[0]
    plan = plan_forward(batch, classes, config)
    acc_dtype = accumulate_dtype(e_hat)
    w_inv_norm = w_inv_norm.to(acc_dtype).contiguous()
    labels_local = labels_local.contiguous()

    out = torch.empty((4, plan.splits.count, batch), dtype=acc_dtype, device=e_hat.device)
    row_max, row_sumexp, target_cos, nn_cos = out.unbind(0)
    nn_index = torch.empty((plan.splits.count, batch), dtype=torch.int64, device=e_hat.device)
    _forward_partials_kernel[plan.grid](
        e_hat,
        weight,
        w_inv_norm,
        labels_local,
        row_max,
        row_sumexp,
        target_cos,
        nn_cos,
        nn_index,
        batch,
        classes,
        dim,
        plan.batch_tiles,
        plan.splits.tiles,
        plan.splits.tiles_per_split,
        e_hat.stride(0),
        e_hat.stride(1),
        weight.stride(0),
        weight.stride(1),
        *margin_scalars(margin),
        BLOCK_B=config.block_b,
        BLOCK_C=config.block_c,
        BLOCK_D=config.block_d,
        **tile_meta(e_hat, margin).kwargs(),
        num_warps=config.num_warps,
        num_stages=config.num_stages,
    )
    return Partials(row_max, row_sumexp, target_cos, nn_cos, nn_index)


@triton.jit
def _forward_partials_kernel(
    e_ptr,
    w_ptr,
    w_inv_norm_ptr,
    labels_ptr,
    row_max_ptr,
    row_sumexp_ptr,
    target_cos_ptr,
    nn_cos_ptr,
    nn_index_ptr,
    batch,
    classes,
    dim,
    batch_tiles,
    class_tiles,
    tiles_per_split,
    stride_eb,
    stride_ed,
    stride_wc,
    stride_wd,
    scale: tl.float64,
    m1: tl.float64,
    m2: tl.float64,
    m3: tl.float64,
    cos_m2: tl.float64,
    sin_m2: tl.float64,
    BLOCK_B: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    COMPUTE_DTYPE: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    EMULATE_BF16: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    MULTIPLICATIVE: tl.constexpr,
):
    pid = tl.program_id(0)
    split = pid // batch_tiles
    # cosine_tile's grouped arguments (DESIGN §7): strides, blocks, the tile product's facts.
    strides = (stride_eb, stride_ed, stride_wc, stride_wd)
    BLOCKS: tl.constexpr = (BLOCK_B, BLOCK_C, BLOCK_D)
    PRODUCT: tl.constexpr = (COMPUTE_DTYPE, DOT_DTYPE, ACC_DTYPE, EMULATE_BF16, INPUT_PRECISION)
    row_start = (pid % batch_tiles) * BLOCK_B
    rows = row_start + tl.arange(0, BLOCK_B)
    row_mask = rows < batch
    labels = tl.load(labels_ptr + rows, mask=row_mask, other=-1)
    e_block_ptr = e_ptr + tl.cast(row_start, tl.int64) * stride_eb
    scale_log2 = to_acc(scale, ACC_DTYPE) * LOG2E
    m1, m2, m3 = to_acc(m1, ACC_DTYPE), to_acc(m2, ACC_DTYPE), to_acc(m3, ACC_DTYPE)
    cos_m2, sin_m2 = to_acc(cos_m2, ACC_DTYPE), to_acc(sin_m2, ACC_DTYPE)

    # Running statistics of the rows over the split; logits are kept in log2 units (z · log2 e).
    run_max = tl.full((BLOCK_B,), float("-inf"), ACC_DTYPE)
    run_sum = tl.zeros((BLOCK_B,), ACC_DTYPE)
    target = tl.full((BLOCK_B,), float("nan"), ACC_DTYPE)
    nn_cos = tl.full((BLOCK_B,), float("-inf"), ACC_DTYPE)
    nn_index = tl.zeros((BLOCK_B,), tl.int32)

    # Loop bounds are run-time scalars (the interpreter takes no tensor bounds); the last split
    # may hold fewer tiles than the others.
    for step in range(tiles_per_split):
        tile = split * tiles_per_split + step
        if tile < class_tiles:
            cols = tile * BLOCK_C + tl.arange(0, BLOCK_C)
            col_mask = cols < classes
            w_tile_ptr = w_ptr + tl.cast(tile * BLOCK_C, tl.int64) * stride_wc
            cos = cosine_tile(
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
            cos = clamp_cosine(cos)
            is_target = (cols[None, :] == labels[:, None]) & col_mask[None, :]
            in_tile = (labels >= tile * BLOCK_C) & (labels < tile * BLOCK_C + BLOCK_C) & (labels < classes)
            tile_target = tl.sum(tl.where(is_target, cos, 0.0), axis=1)
            target = tl.where(in_tile, tile_target, target)

            # Nearest negative: the largest cosine off the label column, its lowest column on ties;
            # tiles are visited in increasing order, so a later tile wins only when strictly larger.
            negatives = tl.where(is_target | ~col_mask[None, :], float("-inf"), cos)
            tile_nn = tl.max(negatives, axis=1)
            tile_index = tl.min(tl.where(negatives == tile_nn[:, None], cols[None, :], 2147483647), axis=1)
            better = tile_nn > nn_cos
            nn_index = tl.where(better, tile_index, nn_index)
            nn_cos = tl.where(better, tile_nn, nn_cos)

            # Logits s·c (s·φ(c) at the label) in log2 units. Scaling by s > 0 is monotone, so the
            # tile's largest logit is the larger of s·(largest negative) and the target logit.
            target_logit = scale_log2 * margin_phi(tile_target, m1, m2, m3, cos_m2, sin_m2, MULTIPLICATIVE)
            logits = tl.where(is_target, target_logit[:, None], cos * scale_log2)
            logits = tl.where(col_mask[None, :], logits, float("-inf"))
            tile_max = tl.maximum(tile_nn * scale_log2, tl.where(in_tile, target_logit, float("-inf")))
            new_max = tl.maximum(run_max, tile_max)
            run_sum = run_sum * tl.exp2(run_max - new_max) + tl.sum(tl.exp2(logits - new_max[:, None]), axis=1)
            run_max = new_max

    # A NaN cosine makes the row's sum NaN; the max over negatives would skip it: propagate it.
    nn_cos = tl.where(run_sum != run_sum, float("nan"), nn_cos)
    out = tl.cast(split, tl.int64) * batch + rows
    tl.store(row_max_ptr + out, run_max * LN2, mask=row_mask)
    tl.store(row_sumexp_ptr + out, run_sum, mask=row_mask)
    tl.store(target_cos_ptr + out, target, mask=row_mask)
    tl.store(nn_cos_ptr + out, nn_cos, mask=row_mask)
    tl.store(nn_index_ptr + out, nn_index.to(tl.int64), mask=row_mask)


# The kernels are interpreted on the CPU when TRITON_INTERPRET=1 was set when triton.jit ran.
INTERPRETED = isinstance(_forward_partials_kernel, InterpretedFunction)
