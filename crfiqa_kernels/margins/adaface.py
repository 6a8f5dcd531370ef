"""AdaFace (Kim et al., CVPR 2022): a margin adapted to image quality through the feature norm."""

from __future__ import annotations

import math

import torch

from .base import MarginFamily, TargetTerms
from .hyperparameters import in_range, positive

# The official head's ``eps``: the cosine clamp, the angle clip and the std floor.
EPS = 1e-3
# The official clip of the feature norms before their statistics.
NORM_CLIP = (0.001, 100.0)


class AdaFace(MarginFamily):
    """``z_iy = s·(cos(clip(θ_iy − m·ŝ_i, ε, π − ε)) − (m + m·ŝ_i))`` with the margin scaler
    ``ŝ_i = clip(h·(a_i − μ) / (σ + ε), −1, 1)`` of the clipped, detached feature norm
    ``a_i = clip(‖E_i‖, 0.001, 100)`` against the running batch mean ``μ`` and std ``σ``.

    As the official head (``AdaFace`` of mk-minchul/AdaFace, ``head.py``) has it:

    - every cosine, negatives included, is clamped to ``[−1 + ε, 1 − ε]``, ``ε = 1e-3``
      (``cos_clamp``); the angle clip ``[ε, π − ε]`` is then a no-op for the negatives, whose angle
      already lies in ``[arccos(1 − ε), π − arccos(1 − ε)]``, so they stay ``s·c_ij``;
    - the buffers start at ``μ = 20``, ``σ = 100`` and are updated under ``no_grad`` *before* the
      margins of the same batch are computed: ``μ ← t_α·mean(a) + (1 − t_α)·μ``, ``σ ← t_α·std(a) +
      (1 − t_α)·σ`` with torch's unbiased std;
    - the norms are detached: no gradient flows through the margins.

    Where the official code (every row labelled) leaves a choice: the mean and std cover the
    labelled rows only; with no labelled row neither statistic moves, with one labelled row the
    mean moves and ``σ`` keeps its value (the unbiased std of one value is NaN, which would poison
    the buffer for good); a row whose norm is NaN counts as unlabelled for the statistics.
    Defaults: ``s = 64``, ``m = 0.4``, ``h = 0.333``, ``t_α = 0.01`` (the official training
    configuration; the head's own default is 1).
    """

    cos_clamp = EPS

    batch_mean: torch.Tensor
    batch_std: torch.Tensor

    def __init__(self, s: float = 64.0, m: float = 0.4, h: float = 0.333, t_alpha: float = 0.01) -> None:
        super().__init__()
        self.s = positive("AdaFace", "s", s)
        self.m = in_range("AdaFace", "m", m, 0.0, math.pi / 2, shown="[0, π/2)")
        self.h = positive("AdaFace", "h", h)
        self.t_alpha = in_range("AdaFace", "t_alpha", t_alpha, 0.0, 1.0, shown="[0, 1]", closed=True)
        self.register_buffer("batch_mean", torch.full((1,), 20.0))
        self.register_buffer("batch_std", torch.full((1,), 100.0))

    @torch.no_grad()
    def update(self, safe_norms: torch.Tensor, valid: torch.Tensor) -> None:
        """The running statistics' step over the labelled rows with a number for a norm (no host
        synchronization): a NaN embedding's row has a NaN loss, but leaves the buffers sane."""
        valid = valid & ~safe_norms.isnan()
        count = valid.sum()
        norms = torch.where(valid, safe_norms, 0.0)
        mean = norms.sum() / count.clamp(min=1)
        std = (torch.where(valid, norms - mean, 0.0).square().sum() / (count - 1).clamp(min=1)).sqrt()
        alpha = self.t_alpha
        self.batch_mean.copy_(torch.where(count >= 1, mean * alpha + (1 - alpha) * self.batch_mean, self.batch_mean))
        self.batch_std.copy_(torch.where(count >= 2, std * alpha + (1 - alpha) * self.batch_std, self.batch_std))

    def margin_scaler(self, safe_norms: torch.Tensor) -> torch.Tensor:
        """``ŝ_i = clip(h·(a_i − μ) / (σ + ε), −1, 1)`` against the current statistics."""
        mean, std = self.batch_mean.to(safe_norms.dtype), self.batch_std.to(safe_norms.dtype)
        return torch.clip((safe_norms - mean) / (std + EPS) * self.h, -1.0, 1.0)

    def prepare(self, target_cos: torch.Tensor, norms: torch.Tensor, valid: torch.Tensor) -> TargetTerms:
        if norms is None:
            raise TypeError("AdaFace needs the embeddings' norms (norms), got None")
        safe_norms = torch.clip(norms.detach(), *NORM_CLIP)
        self.update(safe_norms, valid)
        scaler = self.margin_scaler(safe_norms)
        theta = torch.acos(target_cos)
        theta_m = torch.clip(theta - self.m * scaler, EPS, math.pi - EPS)
        return TargetTerms(self.s * (torch.cos(theta_m) - (self.m + self.m * scaler)))

    def extra_repr(self) -> str:
        return f"s={self.s}, m={self.m}, h={self.h}, t_alpha={self.t_alpha}"
