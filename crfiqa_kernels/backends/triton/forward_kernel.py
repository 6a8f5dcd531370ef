"""Forward partials of the ``triton`` backend (DESIGN §3): one fused pass over the class centers.

Grid: one axis of (batch tiles × class splits) programs, batch tiles varying fastest so the
programs reading the same class tiles run side by side and share them through L2. A program walks
the class tiles of its split (:mod:`..class_splits`):

    cos   = clamp(ê_rows · (W_cols · w_inv_norm_cols)ᵀ, -1 + ε_c, 1 - ε_c)   tl.dot, fp32 accumulation
    logit = s·ν(cos) off the label column, left out at it                 (log2 units: × log2 e)
    online max / Σ exp2 of the non-target logits, the target cosine, the running max of the
    negatives and its lowest index.

It writes one row of :class:`~.contract.Partials` per (split, row); the combine is done in PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from .. import class_splits
from ..contract import LogitParams, Partials, accumulate_dtype
from .common import (
    LN2,
    LOG2E,
    check_operands,
    clamp_cosine,
    cosine_tile,
    launch_arguments,
    negative_value,
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


def launch_forward_partials(
    e_hat, weight, w_inv_norm, labels_local, logits: LogitParams, config: ForwardConfig
) -> Partials:
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
        e_ptr=e_hat,
        w_ptr=weight,
        w_inv_norm_ptr=w_inv_norm,
        labels_ptr=labels_local,
        row_max_ptr=row_max,
        row_sumexp_ptr=row_sumexp,
        target_cos_ptr=target_cos,
        nn_cos_ptr=nn_cos,
        nn_index_ptr=nn_index,
        batch=batch,
        classes=classes,
        dim=dim,
        batch_tiles=plan.batch_tiles,
        class_tiles=plan.splits.tiles,
        tiles_per_split=plan.splits.tiles_per_split,
        **launch_arguments(e_hat, weight, w_inv_norm, logits, (config.block_b, config.block_c, config.block_d), config),
    )
    return Partials(row_max, row_sumexp, target_cos, nn_cos, nn_index)


@triton.jit
def _forward_partials_kernel(
    e_ptr,
    w_ptr,
    w_inv_norm_ptr,
    labels_ptr,
    threshold_ptr,
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
    strides,
    scale: tl.float64,
    cos_low: tl.float64,
    cos_high: tl.float64,
    negative_t: tl.float64,
    BLOCKS: tl.constexpr,
    PRODUCT: tl.constexpr,
    NEGATIVE: tl.constexpr,
):
    # The grouped arguments (DESIGN §7): strides (ê's rows and columns, W's), blocks
    # (BLOCK_B, BLOCK_C, BLOCK_D), the tile product's facts (common.TileMeta.product).
    BLOCK_B: tl.constexpr = BLOCKS[0]
    BLOCK_C: tl.constexpr = BLOCKS[1]
    ACC_DTYPE: tl.constexpr = PRODUCT[2]
    stride_eb = strides[0]
    pid = tl.program_id(0)
    split = pid // batch_tiles
    row_start = (pid % batch_tiles) * BLOCK_B
    rows = row_start + tl.arange(0, BLOCK_B)
    row_mask = rows < batch
    labels = tl.load(labels_ptr + rows, mask=row_mask, other=-1)
    if NEGATIVE != 0:
        threshold = tl.load(threshold_ptr + rows, mask=row_mask, other=0.0).to(ACC_DTYPE)
    else:
        threshold = tl.zeros((BLOCK_B,), ACC_DTYPE)
    e_block_ptr = e_ptr + tl.cast(row_start, tl.int64) * stride_eb
    scale_log2 = to_acc(scale, ACC_DTYPE) * LOG2E
    cos_low, cos_high = to_acc(cos_low, ACC_DTYPE), to_acc(cos_high, ACC_DTYPE)
    negative_t = to_acc(negative_t, ACC_DTYPE)

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
            w_tile_ptr = w_ptr + tl.cast(tile * BLOCK_C, tl.int64) * strides[2]
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
            cos = clamp_cosine(cos, cos_low, cos_high)
            is_target = (cols[None, :] == labels[:, None]) & col_mask[None, :]
            in_tile = (labels >= tile * BLOCK_C) & (labels < tile * BLOCK_C + BLOCK_C) & (labels < classes)
            tile_target = tl.sum(tl.where(is_target, cos, 0.0), axis=1)
            target = tl.where(in_tile, tile_target, target)

            # Nearest negative: the largest cosine off the label column, its lowest column on ties;
            # tiles are visited in increasing order, so a later tile wins only when strictly larger.
            negative = is_target | ~col_mask[None, :]
            negatives = tl.where(negative, float("-inf"), cos)
            tile_nn = tl.max(negatives, axis=1)
            tile_index = tl.min(tl.where(negatives == tile_nn[:, None], cols[None, :], 2147483647), axis=1)
            better = tile_nn > nn_cos
            nn_index = tl.where(better, tile_index, nn_index)
            nn_cos = tl.where(better, tile_nn, nn_cos)

            # Non-target logits s·ν(c) in log2 units, the label column left out. Without a transform
            # (s > 0: monotone) the tile's largest is s·(largest negative).
            if NEGATIVE == 0:
                logits = tl.where(negative, float("-inf"), cos * scale_log2)
                tile_max = tile_nn * scale_log2
            else:
                nu = negative_value(cos, threshold, negative_t, NEGATIVE)
                logits = tl.where(negative, float("-inf"), nu * scale_log2)
                tile_max = tl.max(logits, axis=1)
            # A row without logits so far (max −inf) shifts by 0: exp2(−inf) = 0, never −inf − (−inf).
            new_max = tl.maximum(run_max, tile_max)
            shift = tl.where(new_max == float("-inf"), 0.0, new_max)
            run_sum = run_sum * tl.exp2(run_max - shift) + tl.sum(tl.exp2(logits - shift[:, None]), axis=1)
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
