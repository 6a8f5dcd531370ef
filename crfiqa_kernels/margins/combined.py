"""The combined additive/multiplicative angular margin of ArcFace-style losses (DESIGN §2).

``z_iy = s·φ_i(c_iy)`` with ``φ_i(c) = cos(m1·arccos(c) + m2_i) − m3_i``; ArcFace is ``m1=1, m2=m,
m3=0``; CosFace is ``m1=1, m2=0, m3=m``; combinations are allowed. ``m2`` and ``m3`` are scalars or
(B,) tensors (per-row margins, any sign); a tensor that requires grad receives its gradient.
"""

from __future__ import annotations

import math

import torch

from ..constants import SIN_FLOOR
from .base import MarginFamily, TargetTerms


def _check_scalar(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Margin.{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"Margin.{name} must be finite, got {value}")
    return float(value)


class Margin(MarginFamily):
    """Scale ``s`` and margin parameters ``m1`` (multiplicative angle), ``m2`` (additive angle),
    ``m3`` (additive cosine).

    Scalars: ``s > 0``, ``m1 > 0``, ``m2`` in [0, π), ``m3`` in [0, 2]. ``m2`` and ``m3`` may also be
    (B,) floating tensors of any sign, one margin per row of the batch, on the embeddings' device
    (checked by the op against each batch). No special case for ``θ + m2 > π``.
    """

    def __init__(
        self,
        s: float = 64.0,
        m1: float = 1.0,
        m2: float | torch.Tensor = 0.5,
        m3: float | torch.Tensor = 0.0,
    ) -> None:
        super().__init__()
        self.s = _check_scalar("s", s)
        self.m1 = _check_scalar("m1", m1)
        if self.s <= 0:
            raise ValueError(f"Margin.s must be positive, got {self.s}")
        if self.m1 <= 0:
            raise ValueError(f"Margin.m1 must be positive, got {self.m1}")
        self.m2 = m2 if isinstance(m2, torch.Tensor) else _check_scalar("m2", m2)
        self.m3 = m3 if isinstance(m3, torch.Tensor) else _check_scalar("m3", m3)
        if isinstance(self.m2, float) and not 0.0 <= self.m2 < math.pi:
            raise ValueError(f"Margin.m2 must lie in [0, π), got {self.m2}")
        if isinstance(self.m3, float) and not 0.0 <= self.m3 <= 2.0:
            raise ValueError(f"Margin.m3 must lie in [0, 2], got {self.m3}")
        for name in ("m2", "m3"):
            value = getattr(self, name)
            if isinstance(value, torch.Tensor) and (not value.dtype.is_floating_point or value.dim() != 1):
                raise TypeError(
                    f"Margin.{name} must be a float or a (B,) floating tensor, got {value.dtype} "
                    f"of shape {tuple(value.shape)}"
                )

    @classmethod
    def arcface(cls, s: float = 64.0, m: float = 0.5) -> Margin:
        """Additive angular margin: ``cos(θ + m)``."""
        return cls(s=s, m1=1.0, m2=m, m3=0.0)

    @classmethod
    def cosface(cls, s: float = 64.0, m: float = 0.35) -> Margin:
        """Additive cosine margin: ``cos θ − m``."""
        return cls(s=s, m1=1.0, m2=0.0, m3=m)

    def _params(self) -> tuple:
        return tuple(p if isinstance(p, float) else id(p) for p in (self.s, self.m1, self.m2, self.m3))

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and self._params() == other._params()

    __hash__ = MarginFamily.__hash__

    def extra_repr(self) -> str:
        def show(p):
            return f"{p:g}" if isinstance(p, float) else f"tensor{tuple(p.shape)}"

        return ", ".join(f"{name}={show(getattr(self, name))}" for name in ("s", "m1", "m2", "m3"))

    def check_batch(self, batch: int, device: torch.device, *, values: bool) -> None:
        for name in ("m2", "m3"):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor):
                continue
            if tuple(value.shape) != (batch,):
                raise ValueError(
                    f"Margin.{name} must have shape ({batch},) (one margin per row), got {tuple(value.shape)}"
                )
            if value.device != device:
                raise ValueError(f"Margin.{name} is on {value.device} but embeddings is on {device}")
            if values and not bool(torch.isfinite(value).all()):
                raise ValueError(f"Margin.{name} contains NaN or Inf")

    def _per_row(self, value, like: torch.Tensor) -> torch.Tensor | float:
        return value.to(like.dtype) if isinstance(value, torch.Tensor) else value

    def phi(self, cos: torch.Tensor) -> torch.Tensor:
        """``φ(c) = cos(m1·arccos(c) + m2) − m3`` for ``c`` already clamped to [-1, 1]."""
        return torch.cos(self.m1 * torch.arccos(cos) + self._per_row(self.m2, cos)) - self._per_row(self.m3, cos)

    def phi_grad(self, cos: torch.Tensor) -> torch.Tensor:
        """``φ'(c) = m1·sin(m1·θ + m2) / sin θ`` (d/dc arccos c = −1/sin θ, chain rule through cos).

        ``sin θ = sqrt(max(1 − c², 1e-12))`` and ``θ = atan2(sin θ, c)``, which is ``arccos c`` inside
        (-1, 1) and keeps the quotient at its limit at the ends (1 for CosFace, m1² for m2 = 0).
        """
        sin_theta = torch.sqrt(torch.clamp(1.0 - cos * cos, min=SIN_FLOOR))
        theta = torch.atan2(sin_theta, cos)
        return self.m1 * torch.sin(self.m1 * theta + self._per_row(self.m2, cos)) / sin_theta

    def prepare(self, target_cos: torch.Tensor, norms: torch.Tensor, valid: torch.Tensor) -> TargetTerms:
        """``z = s·φ(c)`` with value φ(c̄) and slope φ'(c̄) at ``c̄ = c.detach()``:

            z = s·(φ(c̄) + φ'(c̄)·(c − c̄))      ∂z/∂c = s·φ'(c),   ∂z/∂m2 = −s·sin(m1·θ + m2),   ∂z/∂m3 = −s

        the exact first derivatives everywhere (autograd differentiates φ(c̄) in m2 and m3), and a
        finite slope at c = ±1, where arccos' is infinite (φ' keeps its limit there)."""
        cos = target_cos.detach()
        slope = self.phi_grad(cos).detach()
        return TargetTerms(self.s * (self.phi(cos) + slope * (target_cos - cos)))


def ArcFace(s: float = 64.0, m: float = 0.5) -> Margin:  # noqa: N802 (a family's name, as in the papers)
    """ArcFace's additive angular margin ``s·cos(θ + m)``; ``m`` a float or (B,) tensor."""
    return Margin(s=s, m1=1.0, m2=m, m3=0.0)


def CosFace(s: float = 64.0, m: float = 0.35) -> Margin:  # noqa: N802 (a family's name, as in the papers)
    """CosFace's additive cosine margin ``s·(cos θ − m)``; ``m`` a float or (B,) tensor."""
    return Margin(s=s, m1=1.0, m2=0.0, m3=m)
