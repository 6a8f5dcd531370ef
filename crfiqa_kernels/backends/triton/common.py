"""What the Triton kernels share: operand checks, the launch arguments both launchers pass, and
the device functions of DESIGN §2 (the cosine tile, the clamp, the negative transform ν and ν').

The kernels see no margin family, only the non-target logits ``s·ν(c)`` (:class:`..contract.LogitParams`):
``s``, the clamp bounds and the transform's parameters are run-time scalars (one compile per dtype,
configuration and transform, whatever the values); the transform's kind is a compile-time mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ..contract import LogitParams, accumulate_dtype, check_logits
from .config import interpreting
from .interpreter import dot_operand, emulates_bf16

LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)
# NEGATIVE modes (positions in contract.NEGATIVE_KINDS).
NEGATIVE_FILTER = tl.constexpr(1)
NEGATIVE_CURRICULAR = tl.constexpr(2)

TL_DTYPES = {
    torch.float16: tl.float16,
    torch.bfloat16: tl.bfloat16,
    torch.float32: tl.float32,
    torch.float64: tl.float64,
}


@dataclass(frozen=True)
class TileMeta:
    """Compile-time facts of a tile product, shared by the forward and backward launches.

    ``compute``: the dtype tile products round their operands to (ê's dtype); ``dot``: the dtype
    handed to ``tl.dot`` (``compute`` on a GPU; see :mod:`.interpreter` for the
    interpreter); ``acc``: accumulation dtype (fp64 for fp64, else fp32); ``input_precision`` of
    fp32 products (tf32 when ``torch.backends.cuda.matmul.allow_tf32``, else IEEE).
    """

    compute: object
    dot: object
    acc: object
    emulate_bf16: bool
    input_precision: str | None

    def product(self) -> tuple:
        """The kernels' ``PRODUCT`` constexpr tuple: ``(COMPUTE_DTYPE, DOT_DTYPE, ACC_DTYPE,
        EMULATE_BF16, INPUT_PRECISION)``."""
        return (self.compute, self.dot, self.acc, self.emulate_bf16, self.input_precision)


def tile_meta(e_hat: torch.Tensor) -> TileMeta:
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
    )


def launch_arguments(e_hat, weight, w_inv_norm, logits: LogitParams, blocks: tuple, config) -> dict:
    """The keyword arguments both launches share: ê's and W's ``strides`` (a tuple), the logits'
    run-time scalars (``scale``, the clamp's ``cos_low`` and ``cos_high``, the transform's
    ``negative_t``) and its per-row ``threshold_ptr``, the compile-time ``BLOCKS`` (a tuple),
    ``PRODUCT`` (:meth:`TileMeta.product`) and ``NEGATIVE`` mode, warps and stages."""
    check_logits(logits, e_hat.shape[0], e_hat.device)
    low, high = logits.bounds()
    # Without a transform the kernels read no threshold: any float tensor stands in for it.
    threshold = w_inv_norm if logits.threshold is None else logits.threshold.to(torch.float32).contiguous()
    return dict(
        threshold_ptr=threshold,
        strides=(e_hat.stride(0), e_hat.stride(1), weight.stride(0), weight.stride(1)),
        scale=float(logits.s),
        cos_low=float(low),
        cos_high=float(high),
        negative_t=float(logits.t),
        BLOCKS=blocks,
        PRODUCT=tile_meta(e_hat).product(),
        NEGATIVE=logits.negative_mode,
        num_warps=config.num_warps,
        num_stages=config.num_stages,
    )


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
def clamp_cosine(cos, low, high):
    """clamp(cos, low, high), NaN kept NaN (a NaN input must not turn into a finite cosine)."""
    if cos.dtype == tl.float64:  # NVIDIA GPUs have no NaN-propagating min/max for fp64
        return tl.where(cos != cos, cos, tl.minimum(tl.maximum(cos, low), high))
    else:
        return tl.clamp(cos, low, high, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def negative_value(cos, threshold, t, NEGATIVE: tl.constexpr):
    """ν(c) of DESIGN §2 for a tile of cosines, ``threshold`` one per row: ``c``; the filter's
    0 above the threshold; CurricularFace's ``c·(t + c)`` above it."""
    if NEGATIVE == NEGATIVE_FILTER:
        return tl.where(cos > threshold[:, None], 0.0, cos)
    elif NEGATIVE == NEGATIVE_CURRICULAR:
        return tl.where(cos > threshold[:, None], cos * (t + cos), cos)
    else:
        return cos


@triton.jit
def negative_slope(cos, threshold, t, NEGATIVE: tl.constexpr):
    """ν'(c): 1; the filter's 0 above the threshold; d/dc c·(t + c) = t + 2c above it."""
    if NEGATIVE == NEGATIVE_FILTER:
        return tl.where(cos > threshold[:, None], 0.0, 1.0)
    elif NEGATIVE == NEGATIVE_CURRICULAR:
        return tl.where(cos > threshold[:, None], t + 2.0 * cos, 1.0)
    else:
        return tl.full(cos.shape, 1.0, cos.dtype)
