"""The ``triton`` backend: the kernel contract of :mod:`..contract` as fused Triton kernels.

It runs on CUDA devices and, for tests, on the CPU when Triton's interpreter is on
(``TRITON_INTERPRET=1`` set before ``triton`` is imported). Block sizes and class splits come from
:mod:`.config`; both functions accept an explicit ``config`` instead.
"""

from __future__ import annotations

import contextlib

import torch

from ..contract import LogitParams, Partials
from . import backward_kernel, forward_kernel
from . import config as block_config
from .config import BackwardConfig, ForwardConfig


def available(device) -> bool:
    """CUDA devices that exist; the CPU only under the interpreter (with interpreted kernels)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index is None or device.index < torch.cuda.device_count())
    if device.type == "cpu":
        return block_config.interpreting() and forward_kernel.INTERPRETED
    return False


def _check_device(e_hat: torch.Tensor) -> None:
    if not available(e_hat.device):
        raise ValueError(
            f"the triton backend runs on CUDA devices, or on the CPU under TRITON_INTERPRET=1; "
            f"e_hat is on {e_hat.device}"
        )


def forward_partials(
    e_hat, weight, w_inv_norm, labels_local, logits: LogitParams, *, config: ForwardConfig | None = None
) -> Partials:
    """:mod:`..contract`'s forward: per-(split, row) partials over the classes of ``weight``."""
    _check_device(e_hat)
    if config is None:
        config = block_config.forward_config(
            e_hat.shape[0], weight.shape[0], e_hat.shape[-1], e_hat.dtype, e_hat.device
        )
    with _on(e_hat.device):
        return forward_kernel.launch_forward_partials(e_hat, weight, w_inv_norm, labels_local, logits, config)


def backward(
    e_hat, weight, w_inv_norm, labels_local, logits: LogitParams, lse, row_grad, *, config: BackwardConfig | None = None
):
    """:mod:`..contract`'s backward: ``(dê, dW)``; the split-buffer path when
    ``torch.are_deterministic_algorithms_enabled()``, fp32 atomics on ``dê`` otherwise."""
    _check_device(e_hat)
    deterministic = torch.are_deterministic_algorithms_enabled()
    if config is None:
        config = block_config.backward_config(
            e_hat.shape[0], weight.shape[0], e_hat.shape[-1], e_hat.dtype, e_hat.device, deterministic
        )
    with _on(e_hat.device):
        return backward_kernel.launch_backward(
            e_hat, weight, w_inv_norm, labels_local, logits, lse, row_grad, config, deterministic
        )


def _on(device: torch.device):
    """Launch on the tensors' GPU (Triton launches on the current device and stream)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
