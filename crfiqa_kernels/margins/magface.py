"""MagFace (Meng et al., CVPR 2021): a margin that grows with the feature norm, and a regularizer
that pulls the norm up."""

from __future__ import annotations

import math

import torch

from .base import MarginFamily, TargetTerms
from .hyperparameters import flag, in_range, positive, real
from .trig import cos_plus


class MagFace(MarginFamily):
    """``z_iy = s·cos(θ_iy + m(a_i))`` with ``a_i = clamp(‖E_i‖, l_a, u_a)`` and the margin linear in
    it, ``m(a) = (u_margin − l_margin)/(u_a − l_a)·(a − l_a) + l_margin``; the loss gains
    ``λ_g·mean(g(a_i))``, ``g(a) = a/u_a² + 1/a``.

    As the official code (``MagLinear`` and ``MagLoss`` of IrvingMeng/MagFace) has it:

    - the norm is *not* detached: the margin and ``g`` both differentiate through ``a_i`` into the
      embedding (zero outside ``[l_a, u_a]``, where the clamp holds);
    - ``cos(θ + m) = c·cos m − sqrt(1 − c²)·sin m`` (``sin θ`` floored as in :func:`~.trig.sin_of`);
    - ``easy_margin`` (the official default): the margin only where ``c_iy > 0``, else ``c_iy``;
      without it: ``c_iy − sin(π − m)·m`` where ``c_iy ≤ cos(π − m)`` (per-row ``m``);
    - cosines clamped to ``[−1, 1]`` only.

    Where the official code (every row labelled) leaves a choice: ``mean(g)`` covers the labelled
    rows (0 without any); it is added to the reduced loss as :attr:`TargetTerms.extra_loss`.
    Defaults: the official training script's ``s = 64``, ``l_a = 10``, ``u_a = 110``,
    ``l_margin = 0.45``, ``u_margin = 0.8``, ``λ_g = 35``.
    """

    def __init__(
        self,
        s: float = 64.0,
        l_a: float = 10.0,
        u_a: float = 110.0,
        l_margin: float = 0.45,
        u_margin: float = 0.8,
        lambda_g: float = 35.0,
        easy_margin: bool = True,
    ) -> None:
        super().__init__()
        self.s = positive("MagFace", "s", s)
        self.l_a = positive("MagFace", "l_a", l_a)
        self.u_a = real("MagFace", "u_a", u_a)
        if not self.u_a > self.l_a:
            raise ValueError(f"MagFace.u_a must exceed l_a = {self.l_a}, got {self.u_a}")
        self.l_margin = in_range("MagFace", "l_margin", l_margin, 0.0, math.pi, shown="[0, π)")
        self.u_margin = in_range("MagFace", "u_margin", u_margin, 0.0, math.pi, shown="[0, π)")
        if self.u_margin < self.l_margin:
            raise ValueError(f"MagFace.u_margin must be at least l_margin = {self.l_margin}, got {self.u_margin}")
        self.lambda_g = real("MagFace", "lambda_g", lambda_g)
        if self.lambda_g < 0:
            raise ValueError(f"MagFace.lambda_g must be non-negative, got {self.lambda_g}")
        self.easy_margin = flag("MagFace", "easy_margin", easy_margin)

    def margin(self, clamped_norms: torch.Tensor) -> torch.Tensor:
        """``m(a)``, linear from ``l_margin`` at ``l_a`` to ``u_margin`` at ``u_a``."""
        slope = (self.u_margin - self.l_margin) / (self.u_a - self.l_a)
        return slope * (clamped_norms - self.l_a) + self.l_margin

    def regularizer(self, clamped_norms: torch.Tensor) -> torch.Tensor:
        """``g(a) = a/u_a² + 1/a``."""
        return clamped_norms / self.u_a**2 + 1.0 / clamped_norms

    def prepare(self, target_cos: torch.Tensor, norms: torch.Tensor, valid: torch.Tensor) -> TargetTerms:
        if norms is None:
            raise TypeError("MagFace needs the embeddings' norms (norms), got None")
        a = torch.clamp(norms.to(target_cos.dtype), self.l_a, self.u_a)
        margin = self.margin(a)
        with_margin = cos_plus(target_cos, margin)
        if self.easy_margin:
            cos_m = torch.where(target_cos > 0, with_margin, target_cos)
        else:
            threshold = torch.cos(math.pi - margin)
            cos_m = torch.where(target_cos > threshold, with_margin, target_cos - torch.sin(math.pi - margin) * margin)
        g = torch.where(valid, self.regularizer(a), 0.0).sum() / valid.sum().clamp(min=1)
        return TargetTerms(self.s * cos_m, extra_loss=self.lambda_g * g)

    def extra_repr(self) -> str:
        return (
            f"s={self.s}, l_a={self.l_a}, u_a={self.u_a}, l_margin={self.l_margin}, u_margin={self.u_margin}, "
            f"lambda_g={self.lambda_g}, easy_margin={self.easy_margin}"
        )
