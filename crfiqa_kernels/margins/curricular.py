"""CurricularFace (Huang et al., CVPR 2020): ArcFace on the target, hard negatives re-weighted by
a running curriculum parameter ``t``."""

from __future__ import annotations

import math

import torch

from .base import MarginFamily, NegativeTransform, TargetTerms
from .hyperparameters import in_range, positive
from .trig import cos_plus

# The official momentum of ``t``.
T_MOMENTUM = 0.01


class CurricularFace(MarginFamily):
    """``z_iy = s·cos(θ_iy + m)`` (``s·(c_iy − sin(π − m)·m)`` where ``c_iy ≤ cos(π − m)``); a
    negative with ``c_ij > cos(θ_iy + m)`` (a hard one) gets the logit ``s·c_ij·(t + c_ij)``.

    As the official head (``CurricularFace`` of HuangYG123/CurricularFace, ``head/metrics.py``) has it:

    - cosines clamped to ``[−1, 1]`` only; ``cos(θ + m) = c·cos m − sqrt(1 − c²)·sin m`` (``sin θ``
      floored as in :func:`~.trig.sin_of`);
    - the hard-negative threshold of row ``i`` is ``cos(θ_iy + m)`` itself — before the ``θ + m > π``
      branch, detached (the mask compares values) — handed to the kernels as the ``"curricular"``
      negative transform;
    - ``t`` (a buffer, starting at 0) is updated under ``no_grad`` *before* the negatives are
      modulated, so the batch uses the new value: ``t ← 0.01·mean(c_iy) + 0.99·t``, the mean of the
      clamped target cosines before the margin; ``t`` itself is a constant of the gradient
      (``∂/∂c_ij = s·(t + 2c_ij)`` on hard negatives).

    Where the official code (every row labelled) leaves a choice: the mean covers the labelled rows;
    with none, ``t`` keeps its value. Defaults: ``s = 64``, ``m = 0.5``.
    """

    t: torch.Tensor

    def __init__(self, s: float = 64.0, m: float = 0.5) -> None:
        super().__init__()
        self.s = positive("CurricularFace", "s", s)
        self.m = in_range("CurricularFace", "m", m, 0.0, math.pi, shown="[0, π)")
        self.threshold = math.cos(math.pi - self.m)
        self.mm = math.sin(math.pi - self.m) * self.m
        self.register_buffer("t", torch.zeros(1))

    @torch.no_grad()
    def update(self, target_cos: torch.Tensor, valid: torch.Tensor) -> None:
        """``t ← 0.01·mean(c_iy) + 0.99·t`` over the labelled rows with a number for a cosine (no host
        synchronization): a NaN embedding's row has a NaN loss, but leaves ``t`` sane."""
        valid = valid & ~target_cos.isnan()
        count = valid.sum()
        mean = torch.where(valid, target_cos, 0.0).sum() / count.clamp(min=1)
        self.t.copy_(torch.where(count >= 1, mean * T_MOMENTUM + (1 - T_MOMENTUM) * self.t, self.t))

    def prepare(self, target_cos: torch.Tensor, norms: torch.Tensor, valid: torch.Tensor) -> TargetTerms:
        with_margin = cos_plus(target_cos, self.m)
        target = torch.where(target_cos > self.threshold, with_margin, target_cos - self.mm)
        self.update(target_cos.detach(), valid)
        negative = NegativeTransform("curricular", with_margin.detach().float(), float(self.t))
        return TargetTerms(self.s * target, negative)

    def extra_repr(self) -> str:
        return f"s={self.s}, m={self.m}"
