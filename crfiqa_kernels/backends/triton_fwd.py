"""Forward partials of the ``triton`` backend (DESIGN §3): one fused pass over the class centers.

Grid: (batch tiles, class splits); batch tiles vary fastest so the programs reading the same class
tiles run side by side and share them through L2. A program walks the class tiles of its split:

    cos   = clamp(ê_rows · (W_cols · w_inv_norm_cols)ᵀ, -1, 1)      tl.dot, fp32 accumulation
    logit = s·cos, s·φ(cos) at the label column                       (log2 units: × log2 e)
    online max / Σ exp2 of the logits, the target cosine, the running max of the negatives and its
    lowest index.

It writes one row of :class:`~.contract.Partials` per (split, row); the combine is done in PyTorch.
The device functions at the bottom of this file (cosine tile, margin, bf16 emulation) are shared
with the backward kernel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from .contract import Partials
from .triton_config import ForwardConfig, interpreting

LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)
HALF_PI = tl.constexpr(1.5707963267948966)
PI = tl.constexpr(3.141592653589793)
# sin θ is evaluated as sqrt(max(1 − c², SIN_FLOOR)) in φ' (margin.SIN_FLOOR).
SIN_FLOOR = tl.constexpr(1e-12)
# asin(x) = x + x³·P(x²) on |x| ≤ 1/2: P is the least-squares fit of degree 7 of (asin x − x)/x³ in
# z = x² on 4000 Chebyshev nodes of [0, 1/4] (numpy.polynomial.polynomial.polyfit); the largest
# error of the resulting arccos on [-1, 1] is 3e-12.
ASIN_P0 = tl.constexpr(0.16666666662263208)
ASIN_P1 = tl.constexpr(0.07500001100502011)
ASIN_P2 = tl.constexpr(0.044642135178425885)
ASIN_P3 = tl.constexpr(0.03040199002968295)
ASIN_P4 = tl.constexpr(0.022089019597363993)
ASIN_P5 = tl.constexpr(0.019537327773709628)
ASIN_P6 = tl.constexpr(0.004818606551787652)
ASIN_P7 = tl.constexpr(0.02997920644109392)

TL_DTYPES = {
    torch.float16: tl.float16,
    torch.bfloat16: tl.bfloat16,
    torch.float32: tl.float32,
    torch.float64: tl.float64,
}


@dataclass(frozen=True)
class TileMeta:
    """Compile-time facts shared by the forward and backward launches.

    ``compute``: the dtype tile products round their operands to (ê's dtype); ``dot``: the dtype
    handed to ``tl.dot`` (``compute``, except bf16 under the interpreter, whose bf16 dot is wrong:
    there the operands are rounded to bf16 by ``round_to_bf16`` and multiplied in fp32);
    ``acc``: accumulation dtype (fp64 for fp64, else fp32); ``input_precision`` of fp32 products
    (tf32 when ``torch.backends.cuda.matmul.allow_tf32``, else IEEE); the margin as constants
    (``multiplicative``: m1 ≠ 1 needs θ = arccos c; otherwise cos(θ + m2) expands without it).
    """

    compute: object
    dot: object
    acc: object
    emulate_bf16: bool
    input_precision: str | None
    scale: float
    m1: float
    m2: float
    m3: float
    cos_m2: float
    sin_m2: float
    multiplicative: bool

    def kwargs(self) -> dict:
        return dict(
            COMPUTE_DTYPE=self.compute, DOT_DTYPE=self.dot, ACC_DTYPE=self.acc, EMULATE_BF16=self.emulate_bf16,
            INPUT_PRECISION=self.input_precision, SCALE=self.scale, M1=self.m1, M2=self.m2, M3=self.m3,
            COS_M2=self.cos_m2, SIN_M2=self.sin_m2, MULTIPLICATIVE=self.multiplicative,
        )


def tile_meta(e_hat: torch.Tensor, margin) -> TileMeta:
    compute = TL_DTYPES[e_hat.dtype]
    emulate_bf16 = interpreting() and e_hat.dtype == torch.bfloat16
    dot = tl.float32 if emulate_bf16 else compute
    if dot == tl.float32 and not interpreting() and torch.backends.cuda.matmul.allow_tf32:
        input_precision = "tf32"
    elif dot in (tl.float32, tl.float64):
        input_precision = "ieee"
    else:  # fp16/bf16 products have a single precision: Triton's default
        input_precision = None
    return TileMeta(
        compute=compute,
        dot=dot,
        acc=tl.float64 if e_hat.dtype == torch.float64 else tl.float32,
        emulate_bf16=emulate_bf16,
        input_precision=input_precision,
        scale=float(margin.s), m1=float(margin.m1), m2=float(margin.m2), m3=float(margin.m3),
        cos_m2=math.cos(margin.m2), sin_m2=math.sin(margin.m2),
        multiplicative=float(margin.m1) != 1.0,
    )


def check_operands(e_hat, weight, w_inv_norm, labels_local) -> None:
    """Shapes, dtypes and devices of the contract's operands (strides are free: they are passed)."""
    if e_hat.dim() != 2 or e_hat.dtype not in TL_DTYPES:
        raise TypeError(f"e_hat must be a 2-D float16/bfloat16/float32/float64 tensor, got {e_hat.dtype} "
                        f"of shape {tuple(e_hat.shape)}")
    if weight.dim() != 2 or weight.dtype not in TL_DTYPES or weight.shape[1] != e_hat.shape[1]:
        raise ValueError(f"weight must be a (C, {e_hat.shape[1]}) float tensor, got {weight.dtype} "
                         f"of shape {tuple(weight.shape)}")
    if w_inv_norm.shape != (weight.shape[0],) or not w_inv_norm.dtype.is_floating_point:
        raise ValueError(f"w_inv_norm must be a float tensor of shape ({weight.shape[0]},), "
                         f"got {w_inv_norm.dtype} of shape {tuple(w_inv_norm.shape)}")
    if labels_local.shape != (e_hat.shape[0],) or labels_local.dtype != torch.int64:
        raise ValueError(f"labels_local must be an int64 tensor of shape ({e_hat.shape[0]},), "
                         f"got {labels_local.dtype} of shape {tuple(labels_local.shape)}")
    for name, tensor in (("weight", weight), ("w_inv_norm", w_inv_norm), ("labels_local", labels_local)):
        if tensor.device != e_hat.device:
            raise ValueError(f"{name} is on {tensor.device} but e_hat is on {e_hat.device}")


def class_split_tiles(classes: int, block_c: int, splits: int) -> tuple[int, int]:
    """(tiles per split, number of non-empty splits) for ``splits`` requested splits."""
    class_tiles = triton.cdiv(classes, block_c)
    per_split = triton.cdiv(class_tiles, min(splits, class_tiles))
    return per_split, triton.cdiv(class_tiles, per_split)


def launch_forward_partials(e_hat, weight, w_inv_norm, labels_local, margin, config: ForwardConfig) -> Partials:
    """Launches the forward kernel; the only caller of ``_forward_partials_kernel``."""
    check_operands(e_hat, weight, w_inv_norm, labels_local)
    batch, dim = e_hat.shape
    classes = weight.shape[0]
    meta = tile_meta(e_hat, margin)
    acc_dtype = torch.float64 if e_hat.dtype == torch.float64 else torch.float32
    tiles_per_split, splits = class_split_tiles(classes, config.block_c, config.splits)
    w_inv_norm = w_inv_norm.to(acc_dtype).contiguous()
    labels_local = labels_local.contiguous()

    out = torch.empty((4, splits, batch), dtype=acc_dtype, device=e_hat.device)
    row_max, row_sumexp, target_cos, nn_cos = out.unbind(0)
    nn_index = torch.empty((splits, batch), dtype=torch.int64, device=e_hat.device)
    grid = (triton.cdiv(batch, config.block_b), splits)
    _forward_partials_kernel[grid](
        e_hat, weight, w_inv_norm, labels_local,
        row_max, row_sumexp, target_cos, nn_cos, nn_index,
        batch, classes, dim,
        e_hat.stride(0), e_hat.stride(1), weight.stride(0), weight.stride(1),
        tiles_per_split,
        BLOCK_B=config.block_b, BLOCK_C=config.block_c, BLOCK_D=config.block_d,
        **meta.kwargs(),
        num_warps=config.num_warps, num_stages=config.num_stages,
    )
    return Partials(row_max, row_sumexp, target_cos, nn_cos, nn_index)


@triton.jit
def _forward_partials_kernel(
    e_ptr, w_ptr, w_inv_norm_ptr, labels_ptr,
    row_max_ptr, row_sumexp_ptr, target_cos_ptr, nn_cos_ptr, nn_index_ptr,
    batch, classes, dim,
    stride_eb, stride_ed, stride_wc, stride_wd,
    tiles_per_split,
    BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
    COMPUTE_DTYPE: tl.constexpr, DOT_DTYPE: tl.constexpr, ACC_DTYPE: tl.constexpr, EMULATE_BF16: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    SCALE: tl.constexpr, M1: tl.constexpr, M2: tl.constexpr, M3: tl.constexpr,
    COS_M2: tl.constexpr, SIN_M2: tl.constexpr, MULTIPLICATIVE: tl.constexpr,
):
    split = tl.program_id(1)
    row_start = tl.program_id(0) * BLOCK_B
    rows = row_start + tl.arange(0, BLOCK_B)
    row_mask = rows < batch
    labels = tl.load(labels_ptr + rows, mask=row_mask, other=-1)
    e_block_ptr = e_ptr + tl.cast(row_start, tl.int64) * stride_eb

    # Running statistics of the rows over the split; logits are kept in log2 units (z · log2 e).
    run_max = tl.full((BLOCK_B,), float("-inf"), ACC_DTYPE)
    run_sum = tl.zeros((BLOCK_B,), ACC_DTYPE)
    target = tl.full((BLOCK_B,), float("nan"), ACC_DTYPE)
    nn_cos = tl.full((BLOCK_B,), float("-inf"), ACC_DTYPE)
    nn_index = tl.zeros((BLOCK_B,), tl.int32)

    first_tile = split * tiles_per_split
    last_tile = tl.minimum(first_tile + tiles_per_split, tl.cdiv(classes, BLOCK_C))
    for tile in range(first_tile, last_tile):
        cols = tile * BLOCK_C + tl.arange(0, BLOCK_C)
        col_mask = cols < classes
        cos = cosine_tile(
            e_block_ptr, w_ptr + tl.cast(tile * BLOCK_C, tl.int64) * stride_wc, w_inv_norm_ptr + tile * BLOCK_C,
            row_mask, col_mask, dim,
            stride_eb, stride_ed, stride_wc, stride_wd,
            BLOCK_B, BLOCK_C, BLOCK_D, COMPUTE_DTYPE, DOT_DTYPE, ACC_DTYPE, EMULATE_BF16, INPUT_PRECISION,
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
        target_logit = (SCALE * LOG2E) * margin_phi(tile_target, M1, M2, M3, COS_M2, SIN_M2, MULTIPLICATIVE)
        logits = tl.where(is_target, target_logit[:, None], cos * (SCALE * LOG2E))
        logits = tl.where(col_mask[None, :], logits, float("-inf"))
        tile_max = tl.maximum(tile_nn * (SCALE * LOG2E), tl.where(in_tile, target_logit, float("-inf")))
        new_max = tl.maximum(run_max, tile_max)
        run_sum = run_sum * tl.exp2(run_max - new_max) + tl.sum(tl.exp2(logits - new_max[:, None]), axis=1)
        run_max = new_max

    # A NaN cosine makes the row's sum NaN; the max over negatives would skip it: propagate it.
    nn_cos = tl.where(run_sum != run_sum, float("nan"), nn_cos)
    out = split * batch + rows
    tl.store(row_max_ptr + out, run_max * LN2, mask=row_mask)
    tl.store(row_sumexp_ptr + out, run_sum, mask=row_mask)
    tl.store(target_cos_ptr + out, target, mask=row_mask)
    tl.store(nn_cos_ptr + out, nn_cos, mask=row_mask)
    tl.store(nn_index_ptr + out, nn_index.to(tl.int64), mask=row_mask)


# The kernels are interpreted on the CPU when TRITON_INTERPRET=1 was set when triton.jit ran.
INTERPRETED = isinstance(_forward_partials_kernel, InterpretedFunction)


# ----------------------------------------------------------------------------------------------
# Device functions shared with the backward kernel.
# ----------------------------------------------------------------------------------------------


@triton.jit
def round_to_bf16(x):
    """``x`` (fp32) rounded to the nearest bfloat16 (ties to even), kept in fp32: the interpreter's
    own fp32 → bf16 conversion truncates and mishandles the carry into the exponent."""
    bits = x.to(tl.int32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def dot_operand(x, COMPUTE_DTYPE: tl.constexpr, DOT_DTYPE: tl.constexpr, EMULATE_BF16: tl.constexpr):
    """``x`` rounded to the compute dtype, in the dtype ``tl.dot`` is given."""
    if EMULATE_BF16:
        return round_to_bf16(x.to(tl.float32))
    else:
        return x.to(COMPUTE_DTYPE).to(DOT_DTYPE)


@triton.jit
def cosine_tile(
    e_ptr, w_ptr, w_inv_norm_ptr, row_mask, col_mask, dim,
    stride_eb, stride_ed, stride_wc, stride_wd,
    BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
    COMPUTE_DTYPE: tl.constexpr, DOT_DTYPE: tl.constexpr, ACC_DTYPE: tl.constexpr, EMULATE_BF16: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    """``ê_rows · ŵ_colsᵀ`` before the clamp: Σ_k ê[rows, k]·ŵ[cols, k] over chunks of ``BLOCK_D``
    columns, ŵ = W·(1/‖W_j‖) formed in the accumulate dtype and both operands then rounded to the
    compute dtype (float16 holds no raw W of norm ≳ 6.5e4); zero outside the masks.
    ``e_ptr``, ``w_ptr`` and ``w_inv_norm_ptr`` point at the tile's first row and class, so the
    per-element offsets stay within the tile (32-bit)."""
    offs_b = tl.arange(0, BLOCK_B)
    offs_c = tl.arange(0, BLOCK_C)
    w_inv_norm = tl.load(w_inv_norm_ptr + offs_c, mask=col_mask, other=0.0)
    acc = tl.zeros((BLOCK_B, BLOCK_C), ACC_DTYPE)
    for k in range(0, dim, BLOCK_D):
        d = k + tl.arange(0, BLOCK_D)
        d_mask = d < dim
        e = tl.load(e_ptr + (offs_b[:, None] * stride_eb + d[None, :] * stride_ed),
                    mask=row_mask[:, None] & d_mask[None, :], other=0.0)
        w = tl.load(w_ptr + (offs_c[:, None] * stride_wc + d[None, :] * stride_wd),
                    mask=col_mask[:, None] & d_mask[None, :], other=0.0)
        w_hat = w.to(ACC_DTYPE) * w_inv_norm[:, None]
        acc = tl.dot(
            dot_operand(e, COMPUTE_DTYPE, DOT_DTYPE, EMULATE_BF16),
            tl.trans(dot_operand(w_hat, COMPUTE_DTYPE, DOT_DTYPE, EMULATE_BF16)),
            acc,
            input_precision=INPUT_PRECISION,
        )
    return acc


@triton.jit
def clamp_cosine(cos):
    """clamp(cos, -1, 1), NaN kept NaN (a NaN input must not turn into a finite cosine)."""
    if cos.dtype == tl.float64:  # NVIDIA GPUs have no NaN-propagating min/max for fp64
        return tl.where(cos != cos, cos, tl.minimum(tl.maximum(cos, -1.0), 1.0))
    else:
        return tl.clamp(cos, -1.0, 1.0, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def arccos(c):
    """θ = arccos c on [-1, 1] from asin on [-1/2, 1/2]: arccos c = π/2 − asin c for |c| ≤ 1/2,
    2·asin(√((1 − |c|)/2)) for c > 1/2 and π minus that for c < −1/2 (half-angle identities)."""
    a = tl.abs(c)
    large = a > 0.5
    u = tl.where(large, tl.sqrt(tl.maximum((1.0 - a) * 0.5, 0.0)), c)
    z = u * u
    poly = ASIN_P7
    poly = poly * z + ASIN_P6
    poly = poly * z + ASIN_P5
    poly = poly * z + ASIN_P4
    poly = poly * z + ASIN_P3
    poly = poly * z + ASIN_P2
    poly = poly * z + ASIN_P1
    poly = poly * z + ASIN_P0
    asin_u = u + u * z * poly
    return tl.where(large, tl.where(c < 0, PI - 2.0 * asin_u, 2.0 * asin_u), HALF_PI - asin_u)


@triton.jit
def margin_phi(c, M1: tl.constexpr, M2: tl.constexpr, M3: tl.constexpr, COS_M2: tl.constexpr,
               SIN_M2: tl.constexpr, MULTIPLICATIVE: tl.constexpr):
    """φ(c) = cos(m1·θ + m2) − m3 with θ = arccos c; for m1 = 1, with sin θ = √(1 − c²) ≥ 0,
    cos(θ + m2) = c·cos m2 − sin θ·sin m2."""
    if MULTIPLICATIVE:
        phi = tl.cos(M1 * arccos(c) + M2) - M3
    else:
        sin_theta = tl.sqrt(tl.maximum(1.0 - c * c, 0.0))
        phi = c * COS_M2 - sin_theta * SIN_M2 - M3
    return phi


@triton.jit
def margin_phi_grad(c, M1: tl.constexpr, M2: tl.constexpr, COS_M2: tl.constexpr, SIN_M2: tl.constexpr,
                    MULTIPLICATIVE: tl.constexpr):
    """φ'(c) = m1·sin(m1·θ + m2) / sin θ (d/dc arccos c = −1/sin θ, chain rule through the cosine),
    the denominator evaluated as √(max(1 − c², 1e-12)); for m1 = 1,
    sin(θ + m2) = sin θ·cos m2 + c·sin m2."""
    sin_floor = tl.sqrt(tl.maximum(1.0 - c * c, SIN_FLOOR))
    if MULTIPLICATIVE:
        grad = M1 * tl.sin(M1 * arccos(c) + M2) / sin_floor
    else:
        sin_theta = tl.sqrt(tl.maximum(1.0 - c * c, 0.0))
        grad = (sin_theta * COS_M2 + c * SIN_M2) / sin_floor
    return grad
