"""Liger-Kernel's and Cut Cross-Entropy's fused linear cross-entropy on normalized inputs.

Both are Triton kernels for CUDA that compute the plain softmax cross-entropy of ``s · ê · ŵᵀ``
(no margin, no CCS / NNCCS) without materializing the logits. Where the package is missing, or
the device is not CUDA, the harness records them as unavailable, with the reason.
"""

from __future__ import annotations

import importlib

import torch.nn.functional as F

from .authors import NORM_FLOOR
from .base import Semantics, Setting, Unavailable, loss_implementation


def _import_on_cuda(module: str, package: str, setting: Setting):
    """The peer's ``module``; Unavailable, with the reason, where ``package`` is missing or the
    device is not CUDA."""
    try:
        imported = importlib.import_module(module)
    except ImportError as error:
        raise Unavailable(f"not installed ({package}): {error}") from None
    if setting.device.type != "cuda":
        raise Unavailable(f"{package} runs on CUDA only, not on {setting.device.type}")
    return imported


def _scaled_operands(embeddings, weight, scale: float):
    """``(s · ê, ŵ)``, the inputs of both kernels. They take one dtype: under bf16 autocast the
    classifier follows the embeddings."""
    e_hat = F.normalize(embeddings, dim=1, eps=NORM_FLOOR).mul(scale)
    w_hat = F.normalize(weight, dim=1, eps=NORM_FLOOR)
    return e_hat, w_hat if w_hat.dtype == e_hat.dtype else w_hat.to(e_hat.dtype)


def _liger(setting: Setting):
    functional = _import_on_cuda("liger_kernel.transformers.functional", "liger-kernel", setting)
    scale = setting.margin.s

    def loss(embeddings, weight, labels):
        e_hat, w_hat = _scaled_operands(embeddings, weight, scale)
        out = functional.liger_fused_linear_cross_entropy(e_hat, w_hat, labels, ignore_index=-1)
        # Some versions return (loss, z_loss).
        return (out[0] if isinstance(out, tuple) else out,)

    return loss


def _cut_cross_entropy(setting: Setting):
    cce = _import_on_cuda("cut_cross_entropy", "cut-cross-entropy", setting)
    scale = setting.margin.s

    def loss(embeddings, weight, labels):
        e_hat, w_hat = _scaled_operands(embeddings, weight, scale)
        return (cce.linear_cross_entropy(e_hat, w_hat, labels, ignore_index=-1, reduction="mean"),)

    return loss


SEMANTICS = Semantics(margin=False)
LIGER = loss_implementation("liger", "Liger-Kernel fused linear CE on (s·ê, ŵ): plain CE", _liger, SEMANTICS)
CUT_CROSS_ENTROPY = loss_implementation(
    "cut_cross_entropy", "Cut Cross-Entropy on (s·ê, ŵ): plain CE", _cut_cross_entropy, SEMANTICS
)
