"""What a margin family is to the op (DESIGN §2–§3): a function of the target cosine, and at most
one transform of the non-target cosines that the kernels apply.

A margin only ever touches the target logit. The op computes each labelled row's target cosine
``c_iy`` in PyTorch (an O(B·D) gather, differentiable into ``E`` and ``W``), hands it to the
family's :meth:`MarginFamily.prepare`, and gets back the target logit ``z_iy = τ_i(c_iy)`` — any
differentiable function of ``c_iy``, per-row parameters and the embedding norms — plus what the
kernels need: the scale ``s`` of the non-target logits ``s·ν(c_ij)``, the cosine clamp bound
``ε_c`` and the negative transform ``ν``. Autograd through ``τ_i`` gives the target column's
gradient, the margins' gradients and the norms' (MagFace).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..backends.contract import NEGATIVE_KINDS

__all__ = ["NEGATIVE_KINDS", "MarginFamily", "NegativeTransform", "TargetTerms"]


class NegativeTransform(NamedTuple):
    """``ν`` of DESIGN §2, applied by the kernels to every non-target cosine ``c_ij``:

    ``"none"``        ``ν(c) = c``
    ``"filter"``      PartialFC's inter-class filter: ``c > threshold_i`` counts as cosine 0 (logit 0,
                      no gradient)
    ``"curricular"``  CurricularFace's hard negatives: ``c > threshold_i`` gives ``c·(t + c)``
                      (``ν'(c) = t + 2c``)

    ``threshold`` is a (B,) float32 tensor without gradient (the filter's ``t`` on every row, or the
    per-row ``cos(θ_iy + m)``); ``t`` a Python float. Both are run-time values of the kernels.
    NNCCS is always the raw cosine's maximum, whatever ``ν`` does to the logits.
    """

    kind: str = "none"
    threshold: torch.Tensor | None = None
    t: float = 0.0


class TargetTerms(NamedTuple):
    """What :meth:`MarginFamily.prepare` returns for one batch.

    ``target_logit``  (B,) ``z_iy`` in the accumulate dtype (float32, float64 for float64 inputs),
                      differentiable; any value on ignored rows (the op masks them)
    ``negative``      the transform of the non-target cosines
    ``extra_loss``    a scalar added to the reduced loss (MagFace's ``λ_g·mean g(a)``), or None
    """

    target_logit: torch.Tensor
    negative: NegativeTransform = NegativeTransform()
    extra_loss: torch.Tensor | None = None


class MarginFamily(nn.Module):
    """Base class of the margin families (an ``nn.Module``, so running statistics are buffers that
    ``state_dict`` saves and a resumed run restores).

    ``s`` scales every logit; ``cos_clamp`` is ``ε_c``: all cosines, negatives included, are clamped
    to ``[−1 + ε_c, 1 − ε_c]`` (0 for most families, AdaFace's 1e-3).
    """

    s: float
    cos_clamp: float = 0.0
    # True for a family whose ``prepare`` draws random numbers (ElasticFace): the sharded head then
    # draws them from a generator seeded alike on every rank, so every rank computes the same terms.
    draws_random: bool = False

    def prepare(self, target_cos: torch.Tensor, norms: torch.Tensor, valid: torch.Tensor) -> TargetTerms:
        """The batch's target terms.

        ``target_cos`` (B,) ``c_iy``, already clamped by ``cos_clamp``, differentiable (NaN-free
        placeholder on ignored rows); ``norms`` (B,) ``‖E_i‖``, differentiable (MagFace's margin
        depends on it; families that use it detached detach it themselves); ``valid`` (B,) bool,
        the labelled rows (running statistics are taken over these only). Families with running
        statistics update them here, under ``torch.no_grad``, in the order their official code does.
        """
        raise NotImplementedError

    def check_batch(self, batch: int, device: torch.device, *, values: bool) -> None:
        """Raises a ValueError/TypeError naming the argument when the family's per-row parameters do
        not fit a batch of ``batch`` rows on ``device``; with ``values``, also reads them (a host
        synchronization: the op asks only when it validates). The op calls it before any kernel
        runs; families without per-row parameters keep this default, which checks nothing."""
