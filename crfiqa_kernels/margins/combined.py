"""The additive/multiplicative angular margin of ArcFace-style losses (DESIGN §2).

``φ(c) = cos(m1·arccos(c) + m2) − m3`` replaces the target cosine ``c = c_iy`` before scaling by ``s``.
ArcFace is ``m1=1, m2=m, m3=0``; CosFace is ``m1=1, m2=0, m3=m``; combinations are allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..constants import SIN_FLOOR


@dataclass(frozen=True)
class Margin:
    """Scale ``s`` and margin parameters ``m1`` (multiplicative angle), ``m2`` (additive angle),
    ``m3`` (additive cosine)."""

    s: float = 64.0
    m1: float = 1.0
    m2: float = 0.5
    m3: float = 0.0

    def __post_init__(self) -> None:
        for name in ("s", "m1", "m2", "m3"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Margin.{name} must be a real number, got {type(value).__name__}")
            if not math.isfinite(value):
                raise ValueError(f"Margin.{name} must be finite, got {value}")
            object.__setattr__(self, name, float(value))
        if self.s <= 0:
            raise ValueError(f"Margin.s must be positive, got {self.s}")
        if self.m1 <= 0:
            raise ValueError(f"Margin.m1 must be positive, got {self.m1}")
        if not 0.0 <= self.m2 < math.pi:
            raise ValueError(f"Margin.m2 must lie in [0, π), got {self.m2}")
        if not 0.0 <= self.m3 <= 2.0:
            raise ValueError(f"Margin.m3 must lie in [0, 2], got {self.m3}")

    @classmethod
    def arcface(cls, s: float = 64.0, m: float = 0.5) -> Margin:
        """Additive angular margin: ``cos(θ + m)``."""
        return cls(s=s, m1=1.0, m2=m, m3=0.0)

    @classmethod
    def cosface(cls, s: float = 64.0, m: float = 0.35) -> Margin:
        """Additive cosine margin: ``cos θ − m``."""
        return cls(s=s, m1=1.0, m2=0.0, m3=m)

    def phi(self, cos: torch.Tensor) -> torch.Tensor:
        """``φ(c) = cos(m1·arccos(c) + m2) − m3`` for ``c`` already clamped to [-1, 1]."""
        return torch.cos(self.m1 * torch.arccos(cos) + self.m2) - self.m3

    def phi_grad(self, cos: torch.Tensor) -> torch.Tensor:
        """``φ'(c) = m1·sin(m1·θ + m2) / sin θ`` (d/dc arccos c = −1/sin θ, chain rule through cos).

        ``sin θ = sqrt(max(1 − c², 1e-12))`` and ``θ = atan2(sin θ, c)``, which is ``arccos c`` inside
        (-1, 1) and keeps the quotient at its limit at the ends (1 for CosFace, m1² for m2 = 0).
        """
        sin_theta = torch.sqrt(torch.clamp(1.0 - cos * cos, min=SIN_FLOOR))
        theta = torch.atan2(sin_theta, cos)
        return self.m1 * torch.sin(self.m1 * theta + self.m2) / sin_theta
