"""``cos(θ + m)`` from ``c = cos θ``, shared by the angular families."""

from __future__ import annotations

import torch

from ..constants import SIN_FLOOR


def sin_of(cos: torch.Tensor) -> torch.Tensor:
    """``sin θ = sqrt(max(1 − c², SIN_FLOOR))`` for ``θ = arccos c`` in [0, π]: the official codes'
    ``sqrt(1 − c²)``, floored so that its gradient ``−c / sin θ`` stays finite at ``c = ±1``."""
    return torch.sqrt(torch.clamp(1.0 - cos * cos, min=SIN_FLOOR))


def cos_plus(cos: torch.Tensor, margin: torch.Tensor | float) -> torch.Tensor:
    """``cos(θ + m) = c·cos m − sin θ·sin m``; ``margin`` a float or a per-row tensor."""
    margin = torch.as_tensor(margin, dtype=cos.dtype, device=cos.device)
    return cos * torch.cos(margin) - sin_of(cos) * torch.sin(margin)
