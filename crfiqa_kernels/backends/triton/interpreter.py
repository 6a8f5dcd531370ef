"""Code for Triton's CPU interpreter only (``TRITON_INTERPRET=1``, the CPU tests); a GPU never runs it.

**bf16 emulation.** The interpreter's bf16 ``tl.dot`` is wrong and its fp32 → bf16 conversion truncates (and mishandles
the carry into the exponent). Under ``TRITON_INTERPRET=1`` with bf16 operands the kernels therefore
round each operand to the nearest bf16 themselves, keep it in fp32 and multiply in fp32: the same
products a GPU's bf16 tensor cores form, accumulated in fp32. On a GPU ``EMULATE_BF16`` is False and
every function here reduces to the plain conversion written in its first line.

**Scalars under NumPy 2.** The interpreter holds a kernel's scalars (its integer arguments among
them) as one-element arrays; Triton 3.6's converts them to Python ints with ``int(array)``, which
NumPy 2 rejects for arrays of one dimension, so every loop with a run-time bound fails there.
:func:`use_numpy2_scalar_index` makes that conversion take the array's single element (what newer
interpreters do); it is applied when this module is imported under the interpreter.
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl
from triton.runtime import interpreter

from .config import interpreting


def use_numpy2_scalar_index() -> None:
    """Patches the interpreter's ``tensor.__index__`` (set anew for every interpreted launch) to
    ``int(data.reshape(-1)[0])`` when NumPy refuses ``int`` of a one-element array; idempotent."""
    try:
        int(np.ones(1, dtype=np.int32))
        return
    except TypeError:
        pass
    patch = interpreter._patch_lang_tensor
    if getattr(patch, "numpy2_scalar_index", False):
        return

    def patched(tensor, scope):
        patch(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    setattr(patched, "numpy2_scalar_index", True)  # noqa: B010 (a marker attribute on a function)
    interpreter._patch_lang_tensor = patched


if interpreting():
    use_numpy2_scalar_index()


def emulates_bf16(dtype: torch.dtype) -> bool:
    """Whether a kernel handling ``dtype`` emulates bf16 rounding (only under the interpreter)."""
    return interpreting() and dtype == torch.bfloat16


@triton.jit
def dot_operand(x, COMPUTE_DTYPE: tl.constexpr, DOT_DTYPE: tl.constexpr, EMULATE_BF16: tl.constexpr):
    """On a GPU ``x.to(COMPUTE_DTYPE)`` (``DOT_DTYPE`` is the compute dtype there); under the
    interpreter with bf16, ``x`` rounded to bf16 and kept in fp32 (``DOT_DTYPE``)."""
    if EMULATE_BF16:
        return round_to_bf16(x.to(tl.float32))
    else:
        return x.to(COMPUTE_DTYPE).to(DOT_DTYPE)


@triton.jit
def store_value(x, OUT_DTYPE: tl.constexpr, EMULATE_BF16: tl.constexpr):
    """On a GPU ``x.to(OUT_DTYPE)``; under the interpreter a bf16 result is rounded first, so the
    interpreter's truncating conversion only drops zero bits."""
    if EMULATE_BF16:
        return round_to_bf16(x.to(tl.float32)).to(OUT_DTYPE)
    else:
        return x.to(OUT_DTYPE)


@triton.jit
def round_to_bf16(x):
    """``x`` (fp32) rounded to the nearest bfloat16 (ties to even), kept in fp32."""
    bits = x.to(tl.int32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
    return bits.to(tl.float32, bitcast=True)
