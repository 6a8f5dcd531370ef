"""What the Triton kernels share: operand checks, compile-time facts of a launch, and the device
functions of DESIGN §2 (the cosine tile, the clamp, the margin φ and its slope φ').

The margin's values are run-time scalars of the kernels (one compile per dtype and configuration,
whatever the margin); only its kind is a compile-time constant: ``MULTIPLICATIVE`` (m1 ≠ 1) needs
θ = arccos c, which for m1 = 1 (ArcFace, CosFace, their combinations) the identities
cos(θ + m2) = c·cos m2 − sin θ·sin m2 and sin(θ + m2) = sin θ·cos m2 + c·sin m2 avoid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ..contract import accumulate_dtype
from .config import interpreting
from .interpreter import dot_operand, emulates_bf16

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
    handed to ``tl.dot`` (``compute`` on a GPU; see :mod:`.interpreter` for the
    interpreter); ``acc``: accumulation dtype (fp64 for fp64, else fp32); ``input_precision`` of
    fp32 products (tf32 when ``torch.backends.cuda.matmul.allow_tf32``, else IEEE);
    ``multiplicative``: the margin's kind (m1 ≠ 1).
    """

    compute: object
    dot: object
    acc: object
    emulate_bf16: bool
    input_precision: str | None
    multiplicative: bool

    def kwargs(self) -> dict:
        return dict(
            COMPUTE_DTYPE=self.compute,
            DOT_DTYPE=self.dot,
            ACC_DTYPE=self.acc,
            EMULATE_BF16=self.emulate_bf16,
            INPUT_PRECISION=self.input_precision,
            MULTIPLICATIVE=self.multiplicative,
        )


def tile_meta(e_hat: torch.Tensor, margin) -> TileMeta:
    emulate_bf16 = emulates_bf16(e_hat.dtype)
    compute = TL_DTYPES[e_hat.dtype]
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
        acc=TL_DTYPES[accumulate_dtype(e_hat)],
        emulate_bf16=emulate_bf16,
        input_precision=input_precision,
        multiplicative=float(margin.m1) != 1.0,
    )


def margin_scalars(margin) -> tuple[float, float, float, float, float, float]:
    """The kernels' run-time margin arguments ``(s, m1, m2, m3, cos m2, sin m2)``, as Python floats
    (the kernels take them as float64 and convert them to the accumulate dtype)."""
    m2 = float(margin.m2)
    return float(margin.s), float(margin.m1), m2, float(margin.m3), math.cos(m2), math.sin(m2)


def check_operands(e_hat, weight, w_inv_norm, labels_local) -> None:
    """Shapes, dtypes and devices of the contract's operands (strides are free: they are passed)."""
    if e_hat.dim() != 2 or e_hat.dtype not in TL_DTYPES:
        raise TypeError(
            f"e_hat must be a 2-D float16/bfloat16/float32/float64 tensor, got {e_hat.dtype} "
            f"of shape {tuple(e_hat.shape)}"
        )
    if weight.dim() != 2 or weight.dtype not in TL_DTYPES or weight.shape[1] != e_hat.shape[1]:
        raise ValueError(
            f"weight must be a (C, {e_hat.shape[1]}) float tensor, got {weight.dtype} of shape {tuple(weight.shape)}"
        )
    if weight.shape[0] < 1 or e_hat.shape[0] < 1:
        raise ValueError(f"e_hat and weight need at least one row, got {e_hat.shape[0]} and {weight.shape[0]}")
    if w_inv_norm.shape != (weight.shape[0],) or not w_inv_norm.dtype.is_floating_point:
        raise ValueError(
            f"w_inv_norm must be a float tensor of shape ({weight.shape[0]},), "
            f"got {w_inv_norm.dtype} of shape {tuple(w_inv_norm.shape)}"
        )
    if labels_local.shape != (e_hat.shape[0],) or labels_local.dtype != torch.int64:
        raise ValueError(
            f"labels_local must be an int64 tensor of shape ({e_hat.shape[0]},), "
            f"got {labels_local.dtype} of shape {tuple(labels_local.shape)}"
        )
    for name, tensor in (("weight", weight), ("w_inv_norm", w_inv_norm), ("labels_local", labels_local)):
        if tensor.device != e_hat.device:
            raise ValueError(f"{name} is on {tensor.device} but e_hat is on {e_hat.device}")


# ----------------------------------------------------------------------------------------------
# Device functions.
# ----------------------------------------------------------------------------------------------


@triton.jit
def to_acc(x, ACC_DTYPE: tl.constexpr):
    """A float64 run-time scalar (or a Python float under the interpreter) in the accumulate dtype."""
    return tl.full((), x, ACC_DTYPE)


@triton.jit
def cosine_tile(
    e_ptr, w_ptr, w_inv_norm_ptr, row_mask, col_mask, dim, strides, BLOCKS: tl.constexpr, PRODUCT: tl.constexpr
):
    """``ê_rows · ŵ_colsᵀ`` before the clamp: Σ_k ê[rows, k]·ŵ[cols, k] over chunks of ``BLOCK_D``
    columns, ŵ = W·(1/‖W_j‖) formed in the accumulate dtype and both operands then rounded to the
    compute dtype (float16 holds no raw W of norm ≳ 6.5e4); zero outside the masks.
    ``e_ptr``, ``w_ptr`` and ``w_inv_norm_ptr`` point at the tile's first row and class, so the
    per-element offsets stay within the tile (32-bit). ``strides``: ê's rows and columns, then W's;
    ``BLOCKS``: ``(BLOCK_B, BLOCK_C, BLOCK_D)``; ``PRODUCT``: the tile product's compile-time facts,
    ``(COMPUTE_DTYPE, DOT_DTYPE, ACC_DTYPE, EMULATE_BF16, INPUT_PRECISION)`` (:class:`TileMeta`)."""
    BLOCK_B: tl.constexpr = BLOCKS[0]
    BLOCK_C: tl.constexpr = BLOCKS[1]
    BLOCK_D: tl.constexpr = BLOCKS[2]
    COMPUTE_DTYPE: tl.constexpr = PRODUCT[0]
    DOT_DTYPE: tl.constexpr = PRODUCT[1]
    ACC_DTYPE: tl.constexpr = PRODUCT[2]
    EMULATE_BF16: tl.constexpr = PRODUCT[3]
    INPUT_PRECISION: tl.constexpr = PRODUCT[4]
    stride_eb, stride_ed, stride_wc, stride_wd = strides
    offs_b = tl.arange(0, BLOCK_B)
    offs_c = tl.arange(0, BLOCK_C)
    w_inv_norm = tl.load(w_inv_norm_ptr + offs_c, mask=col_mask, other=0.0)
    acc = tl.zeros((BLOCK_B, BLOCK_C), ACC_DTYPE)
    for k in range(0, dim, BLOCK_D):
        d = k + tl.arange(0, BLOCK_D)
        d_mask = d < dim
        e = tl.load(
            e_ptr + (offs_b[:, None] * stride_eb + d[None, :] * stride_ed),
            mask=row_mask[:, None] & d_mask[None, :],
            other=0.0,
        )
        w = tl.load(
            w_ptr + (offs_c[:, None] * stride_wc + d[None, :] * stride_wd),
            mask=col_mask[:, None] & d_mask[None, :],
            other=0.0,
        )
        w_hat = w.to(ACC_DTYPE) * w_inv_norm[:, None]
        acc = tl.dot(
            dot_operand(e, COMPUTE_DTYPE, DOT_DTYPE, EMULATE_BF16),
            tl.trans(dot_operand(w_hat, COMPUTE_DTYPE, DOT_DTYPE, EMULATE_BF16)),
            acc,
            input_precision=INPUT_PRECISION,
            out_dtype=ACC_DTYPE,
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
def margin_phi(c, m1, m2, m3, cos_m2, sin_m2, MULTIPLICATIVE: tl.constexpr):
    """φ(c) = cos(m1·θ + m2) − m3 with θ = arccos c; for m1 = 1, with sin θ = √(1 − c²) ≥ 0,
    cos(θ + m2) = c·cos m2 − sin θ·sin m2."""
    if MULTIPLICATIVE:
        phi = tl.cos(m1 * arccos(c) + m2) - m3
    else:
        sin_theta = tl.sqrt(tl.maximum(1.0 - c * c, 0.0))
        phi = c * cos_m2 - sin_theta * sin_m2 - m3
    return phi


@triton.jit
def margin_phi_grad(c, m1, m2, cos_m2, sin_m2, MULTIPLICATIVE: tl.constexpr):
    """φ'(c) = m1·sin(m1·θ + m2) / sin θ (d/dc arccos c = −1/sin θ, chain rule through the cosine),
    the denominator evaluated as √(max(1 − c², 1e-12)); for m1 = 1,
    sin(θ + m2) = sin θ·cos m2 + c·sin m2."""
    sin_floor = tl.sqrt(tl.maximum(1.0 - c * c, SIN_FLOOR))
    if MULTIPLICATIVE:
        grad = m1 * tl.sin(m1 * arccos(c) + m2) / sin_floor
    else:
        sin_theta = tl.sqrt(tl.maximum(1.0 - c * c, 0.0))
        grad = (sin_theta * cos_m2 + c * sin_m2) / sin_floor
    return grad
