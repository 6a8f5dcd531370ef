"""The ``cuda`` backend: the kernel contract of :mod:`.contract` as compiled CUDA kernels.

The kernels live in ``csrc/`` and are built into ``crfiqa_kernels._C`` (CMake + ninja, see
``setup.py``). The extension knows nothing of torch: this module allocates the outputs with torch
and hands the launchers device pointers, sizes, strides, dtype codes and the current CUDA stream.

Tile products run on the tensor cores: bf16/fp16 embeddings as they are, fp32 ones as tf32 when
``torch.backends.cuda.matmul.allow_tf32`` is set and as 3xTF32 (about fp32 accuracy) otherwise.
``W`` may have any of the three dtypes (converted to the compute dtype on the fly); ``dW`` comes
back in ``W``'s dtype, ``dê`` in float32. float64 operands — the oracle's precision, which the
tensor cores do not offer — are served by the ``chunked`` backend on the same device: ``DELEGATES``
says so to the registry (``crfiqa_kernels.backends.serving("cuda", torch.float64) == "chunked"``).

The backward is one kernel that computes each cosine tile once (csrc/backward.cu): a block owns
groups of class tiles (512 classes in 16 bits, 256 in fp32), keeps their ∂ℓ/∂c in a bounded scratch
(shared memory when ``group × B`` elements fit, else ``blocks × group × B`` elements of global
memory, at most the bytes of a float32 ``dW``), writes its rows of ``dW`` once and adds its share of
``dê`` once per group with atomic adds, or, when ``torch.are_deterministic_algorithms_enabled()``,
into its own (B, D) slice, the slices summed in a fixed order. ``dW`` and the forward partials are
always deterministic. Grids are planned by the extension's pure functions ``_C.plan_forward`` /
``_C.plan_backward`` (1-D, below 2^31 blocks).
"""

from __future__ import annotations

import functools
import importlib
import math
import re

import torch

from . import class_splits
from .contract import LogitParams, Partials, check_logits

try:
    _C = importlib.import_module("crfiqa_kernels._C")
except ImportError:  # built without nvcc (CRFIQA_BUILD_CUDA=auto/0): the backend is unavailable
    _C = None  # type: ignore[assignment]

# Blocks per streaming multiprocessor the forward grid aims for (two waves' worth of load balance).
BLOCKS_PER_SM = 2
# The dtypes this backend does not run itself, and the backend that serves them (see the registry).
DELEGATES = {torch.float64: "chunked"}

_ARCH = re.compile(r"^(\d+)([af]?)(?:-(real|virtual))?$")


def extension_built() -> bool:
    """Whether ``crfiqa_kernels._C`` was built and imports."""
    return _C is not None


def runs_on(capability: tuple[int, int], architectures) -> bool:
    """Whether a build for ``architectures`` (CMake CUDA_ARCHITECTURES entries such as ``"80"``,
    ``"90a"``, ``"86-real"``) holds code for a device of compute ``capability`` without a PTX JIT
    to another major version: ``XY`` (SASS) runs on major X, minor ≥ Y; ``XYa`` only on X.Y;
    ``XYf`` on the family X.Y+; a ``-virtual`` (PTX-only) entry on X.Y and later minors of X."""
    major, minor = capability
    for arch in architectures:
        match = _ARCH.match(str(arch))
        if match is None:
            continue
        number, suffix = int(match.group(1)), match.group(2)
        arch_major, arch_minor = divmod(number, 10)
        if suffix == "a":
            if (major, minor) == (arch_major, arch_minor):
                return True
        elif major == arch_major and minor >= arch_minor:
            return True
    return False


def shared_memory_suffices(max_shared_bytes: int) -> bool:
    """Whether a block may opt into enough shared memory for the backward of every product policy
    (120 KiB in 16 bits, 154 KiB in fp32: an sm_80 or sm_90 has 163 / 227 KiB, an sm_86 or sm_89 only
    99 KiB, where the backend reports itself unavailable)."""
    for policy in (_C.POLICY_FLOAT16, _C.POLICY_BFLOAT16, _C.POLICY_TF32, _C.POLICY_3XTF32):
        try:
            _C.plan_backward(
                policy=policy,
                batch=1,
                classes=1,
                dim=1,
                deterministic=False,
                multiprocessors=1,
                max_shared_bytes=max_shared_bytes,
            )
        except RuntimeError:
            return False
    return True


@functools.cache
def _device_supported(index: int) -> bool:
    capability = torch.cuda.get_device_capability(index)
    return (
        runs_on(capability, _C.ARCHITECTURES)
        and bool(_C.kernel_image_available(index))
        and shared_memory_suffices(_C.device_properties(index)["max_shared_bytes"])
    )


def available(device) -> bool:
    """CUDA devices whose compute capability this build targets, when the extension imports."""
    device = torch.device(device)
    if device.type != "cuda" or _C is None or not torch.cuda.is_available():
        return False
    index = torch.cuda.current_device() if device.index is None else device.index
    return index < torch.cuda.device_count() and _device_supported(index)


def dtype_code(dtype: torch.dtype) -> int:
    codes = {torch.float32: _C.DTYPE_FLOAT32, torch.float16: _C.DTYPE_FLOAT16, torch.bfloat16: _C.DTYPE_BFLOAT16}
    if dtype not in codes:
        raise TypeError(f"the cuda kernels take float32, float16 or bfloat16 matrices, got {dtype}")
    return codes[dtype]


def product_policy(dtype: torch.dtype) -> int:
    """How the tile products run for embeddings of ``dtype`` (see the module docstring)."""
    if dtype == torch.float16:
        return _C.POLICY_FLOAT16
    if dtype == torch.bfloat16:
        return _C.POLICY_BFLOAT16
    if dtype == torch.float32:
        return _C.POLICY_TF32 if torch.backends.cuda.matmul.allow_tf32 else _C.POLICY_3XTF32
    raise TypeError(f"e_hat must be float32, float16 or bfloat16 for the cuda kernels, got {dtype}")


def whole_splits(requested: int, class_tiles: int) -> int:
    """The number of non-empty splits when ``class_tiles`` tiles are cut into ``requested`` runs
    (the one rule of :mod:`.class_splits`, which the kernels follow)."""
    return class_splits.plan(class_tiles, requested).count


def forward_splits(batch: int, classes: int, multiprocessors: int) -> int:
    """Class splits that give the forward grid about BLOCKS_PER_SM blocks per multiprocessor."""
    row_tiles = math.ceil(batch / _C.FORWARD_BLOCK_ROWS)
    class_tiles = math.ceil(classes / _C.FORWARD_BLOCK_CLASSES)
    return whole_splits(max(1, math.ceil(BLOCKS_PER_SM * multiprocessors / row_tiles)), class_tiles)


def backward_plan(
    e_dtype: torch.dtype,
    batch: int,
    classes: int,
    dim: int,
    *,
    multiprocessors: int,
    max_shared_bytes: int,
    deterministic: bool,
    blocks: int = 0,
) -> dict:
    """The backward's launch on a device with these limits (no CUDA call): ``blocks`` (the 1-D
    ``grid``), the ``group_classes`` of a block's unit of work and the ``groups`` the blocks take in
    turn, where the ∂ℓ/∂c scratch lives (``scratch_in_shared``, else ``scratch_elements`` of the compute dtype),
    ``shared_bytes`` and the rows of the float32 dê buffer (``d_e_rows``). ``blocks`` = 0 fills the
    device; a request is capped by the class groups and the memory bounds (see csrc/plan.h)."""
    return _C.plan_backward(
        policy=product_policy(e_dtype),
        batch=batch,
        classes=classes,
        dim=dim,
        deterministic=deterministic,
        multiprocessors=multiprocessors,
        max_shared_bytes=max_shared_bytes,
        blocks=blocks,
    )


def _matrix(tensor: torch.Tensor):
    """``tensor`` with unit column stride (a copy only when it has none) and its launcher argument."""
    rows, cols = tensor.shape
    if not (tensor.stride(1) == 1 or cols == 1) or (rows > 1 and tensor.stride(0) < cols):
        tensor = tensor.contiguous()
    row_stride = tensor.stride(0) if rows > 1 else cols
    arg = _C.Matrix(
        ptr=tensor.data_ptr(), dtype=dtype_code(tensor.dtype), rows=rows, cols=cols, row_stride=row_stride, col_stride=1
    )
    return tensor, arg


def _vector_arg(tensor: torch.Tensor):
    """The launcher argument of a contiguous tensor (outputs are allocated contiguous)."""
    code = _C.DTYPE_INT64 if tensor.dtype == torch.int64 else dtype_code(tensor.dtype)
    return _C.Vector(ptr=tensor.data_ptr(), dtype=code, length=tensor.numel())


def _vector(tensor: torch.Tensor, dtype: torch.dtype):
    """``tensor`` in ``dtype``, contiguous (a copy only when needed), and its launcher argument."""
    tensor = tensor.to(dtype).contiguous()
    return tensor, _vector_arg(tensor)


def _check(e_hat, weight, *others) -> None:
    if not available(e_hat.device):
        raise ValueError(
            f"the cuda backend needs the built extension and a CUDA device it was compiled for; "
            f"e_hat is on {e_hat.device}"
        )
    if e_hat.dim() != 2 or weight.dim() != 2 or weight.shape[1] != e_hat.shape[1]:
        raise ValueError(
            f"e_hat (B, D) and weight (C, D) must share D, got {tuple(e_hat.shape)} and {tuple(weight.shape)}"
        )
    for name, tensor in (("weight", weight), *others):
        if tensor.device != e_hat.device:
            raise ValueError(f"{name} is on {tensor.device} but e_hat is on {e_hat.device}")


def _delegate(e_hat, weight):
    """The backend module serving these operands when this one does not (``DELEGATES``), else None."""
    from . import get  # the registry; imported here because it imports this module

    for dtype in (e_hat.dtype, weight.dtype):
        if dtype in DELEGATES:
            return get("cuda", dtype)
    return None


def _logit_args(logits: LogitParams, batch: int, device: torch.device) -> tuple[dict, torch.Tensor | None]:
    """The launchers' ``logits=(s, cos_clamp, t)``, ``negative`` mode and ``threshold`` vector (empty
    without a transform), and the threshold tensor to keep alive through the launch."""
    check_logits(logits, batch, device)
    args = dict(logits=(float(logits.s), float(logits.cos_clamp), float(logits.t)), negative=logits.negative_mode)
    if logits.threshold is None:
        return {**args, "threshold": _C.Vector(ptr=0, dtype=_C.DTYPE_FLOAT32, length=0)}, None
    threshold, threshold_arg = _vector(logits.threshold, torch.float32)
    return {**args, "threshold": threshold_arg}, threshold


def _launch_context(device: torch.device) -> dict:
    index = device.index if device.index is not None else torch.cuda.current_device()
    return {"device": index, "stream": torch.cuda.current_stream(index).cuda_stream}


def _device_properties(device: torch.device) -> dict:
    """``multiprocessors`` and ``max_shared_bytes`` of the device (cached by the extension)."""
    return _C.device_properties(device.index if device.index is not None else torch.cuda.current_device())


def _operand_args(e_hat, weight, w_inv_norm, labels_local) -> tuple[tuple, dict]:
    """The launcher arguments both kernels take first (stream, product policy, operands), and the
    tensors they point into: copies where an operand needed one, which the caller keeps alive until
    the launch has been queued."""
    e_hat, e_arg = _matrix(e_hat)
    weight, w_arg = _matrix(weight)
    w_inv_norm, inv_arg = _vector(w_inv_norm, torch.float32)
    labels_local, labels_arg = _vector(labels_local, torch.int64)
    args = dict(
        **_launch_context(e_hat.device),
        policy=product_policy(e_hat.dtype),
        e=e_arg,
        weight=w_arg,
        w_inv_norm=inv_arg,
        labels=labels_arg,
    )
    return (e_hat, weight, w_inv_norm, labels_local), args


def forward_partials(
    e_hat, weight, w_inv_norm, labels_local, logits: LogitParams, *, splits: int | None = None
) -> Partials:
    """Partials (S, B) of the shard; ``splits`` overrides the number of class splits."""
    _check(e_hat, weight, ("w_inv_norm", w_inv_norm), ("labels_local", labels_local))
    delegate = _delegate(e_hat, weight)
    if delegate is not None:
        return delegate.forward_partials(e_hat, weight, w_inv_norm, labels_local, logits)
    batch, classes = e_hat.shape[0], weight.shape[0]
    class_tiles = math.ceil(classes / _C.FORWARD_BLOCK_CLASSES)
    if splits is None:
        splits = forward_splits(batch, classes, _device_properties(e_hat.device)["multiprocessors"])
    else:
        splits = whole_splits(splits, class_tiles)
    kept_alive, operand_args = _operand_args(e_hat, weight, w_inv_norm, labels_local)  # through the launch
    logit_args, threshold = _logit_args(logits, batch, e_hat.device)

    stats = torch.empty((4, splits, batch), dtype=torch.float32, device=e_hat.device)
    nn_index = torch.empty((splits, batch), dtype=torch.int64, device=e_hat.device)
    row_max, row_sumexp, target_cos, nn_cos = stats.unbind(0)
    _C.forward_partials(
        **operand_args,
        **logit_args,
        splits=splits,
        row_max=_vector_arg(row_max),
        row_sumexp=_vector_arg(row_sumexp),
        target_cos=_vector_arg(target_cos),
        nn_cos=_vector_arg(nn_cos),
        nn_index=_vector_arg(nn_index),
    )
    return Partials(row_max, row_sumexp, target_cos, nn_cos, nn_index)


def backward(e_hat, weight, w_inv_norm, labels_local, logits: LogitParams, lse, row_grad, *, blocks: int = 0):
    """``(dê float32, dW in weight's dtype)``; ``blocks`` > 0 asks for that many backward blocks (capped
    as :func:`backward_plan` says)."""
    _check(
        e_hat, weight, ("w_inv_norm", w_inv_norm), ("labels_local", labels_local), ("lse", lse), ("row_grad", row_grad)
    )
    delegate = _delegate(e_hat, weight)
    if delegate is not None:
        return delegate.backward(e_hat, weight, w_inv_norm, labels_local, logits, lse, row_grad)
    batch, dim = e_hat.shape
    deterministic = torch.are_deterministic_algorithms_enabled()
    plan = backward_plan(
        e_hat.dtype,
        batch,
        weight.shape[0],
        dim,
        deterministic=deterministic,
        blocks=blocks,
        **_device_properties(e_hat.device),
    )
    kept_alive, operand_args = _operand_args(e_hat, weight, w_inv_norm, labels_local)  # through the launch
    logit_args, threshold = _logit_args(logits, batch, e_hat.device)
    lse, lse_arg = _vector(lse, torch.float32)
    row_grad, grad_arg = _vector(row_grad, torch.float32)
    if plan["scratch_in_shared"]:
        scratch_arg = _C.Vector(ptr=0, dtype=dtype_code(e_hat.dtype), length=0)
    else:
        scratch = torch.empty(plan["scratch_elements"], dtype=e_hat.dtype, device=e_hat.device)
        scratch_arg = _vector_arg(scratch)
    d_weight = torch.empty(weight.shape, dtype=weight.dtype, device=weight.device)
    # Atomic adds need zeros; each deterministic slice is stored whole by its block before any add.
    allocate = torch.empty if deterministic else torch.zeros
    d_e = allocate((plan["d_e_rows"], dim), dtype=torch.float32, device=e_hat.device)
    _C.backward(
        **operand_args,
        lse=lse_arg,
        row_grad=grad_arg,
        **logit_args,
        blocks=plan["blocks"],
        deterministic=deterministic,
        scratch=scratch_arg,
        d_e=_matrix(d_e)[1],
        d_weight=_matrix(d_weight)[1],
    )
    if deterministic:
        # The per-block slices, summed in a fixed order.
        d_e = d_e.view(plan["blocks"], batch, dim).sum(dim=0)
    return d_e, d_weight
