"""ElasticFace (Boutros et al., CVPR-W 2022): ArcFace or CosFace with a margin drawn per sample
from a normal distribution at every step."""

from __future__ import annotations

import torch

from ..options import ELASTIC_KINDS
from .base import MarginFamily, TargetTerms
from .hyperparameters import flag, in_range, positive, real
from .trig import cos_plus

DEFAULT_M = {"arc": 0.5, "cos": 0.35}


class ElasticFace(MarginFamily):
    """ElasticFace-Arc ``z_iy = s·cos(θ_iy + m_i)`` or ElasticFace-Cos ``z_iy = s·(c_iy − m_i)``,
    ``m_i ~ N(m, std)`` drawn anew at every call of :meth:`prepare`.

    As the official code (``ElasticArcFace`` / ``ElasticCosFace`` of fdbtrs/ElasticFace) has it:

    - one draw per labelled row, ``torch.normal(mean=m, std=std, size=(n_valid, 1))`` from the
      default generator on the cosines' device, in float32 (cast to the accumulate dtype after), in
      the order of the labelled rows; ignored rows get no draw and no margin. ``torch.manual_seed``
      makes the draws reproducible; the sharded head, where every rank computes the target logits
      of the whole batch, draws them from a generator seeded by group rank 0 (``draws_random``);
    - ``plus`` (ElasticFace+): ``order = argsort(c_iy over the labelled rows, descending)`` (detached)
      and the draws sorted ascending; the official code then assigns ``sorted_draws[order]``, i.e.
      the labelled row ``k`` gets the ``order[k]``-th smallest draw, where ``order[k]`` is the
      position of the ``k``-th largest target cosine. That indexes by the sort permutation itself,
      not its inverse (the inverse would give the largest cosine the smallest margin); this family
      keeps the official pairing exactly;
    - no clamp beyond ``[-1, 1]`` and no branch for ``θ + m_i > π`` (``cos(acos c + m_i)`` as is; here
      ``c·cos m_i − sin θ·sin m_i``, the same value, with ``sin θ`` floored so the gradient stays
      finite at ``c = ±1``);
    - the draws are constants: no gradient flows to them.

    Defaults: ``s = 64``, ``m = 0.5`` for ``kind="arc"``, ``0.35`` for ``kind="cos"``, ``std = 0.0125``.
    """

    draws_random = True

    def __init__(
        self, s: float = 64.0, m: float | None = None, std: float = 0.0125, kind: str = "arc", plus: bool = False
    ) -> None:
        super().__init__()
        if kind not in ELASTIC_KINDS:
            raise ValueError(f"ElasticFace.kind must be one of {ELASTIC_KINDS}, got {kind!r}")
        self.kind = kind
        self.s = positive("ElasticFace", "s", s)
        self.m = DEFAULT_M[kind] if m is None else real("ElasticFace", "m", m)
        if kind == "arc":
            in_range("ElasticFace", "m", self.m, 0.0, torch.pi, shown="[0, π) for kind='arc'")
        else:
            in_range("ElasticFace", "m", self.m, 0.0, 2.0, shown="[0, 2] for kind='cos'", closed=True)
        self.std = real("ElasticFace", "std", std)
        if self.std < 0:
            raise ValueError(f"ElasticFace.std must be non-negative, got {self.std}")
        self.plus = flag("ElasticFace", "plus", plus)

    def draw(self, target_cos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The (B,) margins of one call: the official draws on the labelled rows, 0 elsewhere."""
        index = torch.nonzero(valid).squeeze(1)
        draws = torch.normal(mean=self.m, std=self.std, size=(index.numel(), 1), device=target_cos.device)
        draws = draws.squeeze(1).to(target_cos.dtype)
        if self.plus:
            with torch.no_grad():
                _, order = torch.sort(target_cos.detach()[index], dim=0, descending=True)
                draws, _ = torch.sort(draws, dim=0)
                draws = draws[order]
        return torch.zeros_like(target_cos).index_copy(0, index, draws)

    def prepare(self, target_cos: torch.Tensor, norms: torch.Tensor, valid: torch.Tensor) -> TargetTerms:
        margin = self.draw(target_cos, valid)
        if self.kind == "arc":
            return TargetTerms(self.s * cos_plus(target_cos, margin))
        return TargetTerms(self.s * (target_cos - margin))

    def extra_repr(self) -> str:
        return f"s={self.s}, m={self.m}, std={self.std}, kind={self.kind!r}, plus={self.plus}"
