"""The combine step of DESIGN §3, written once for the single-device op and the sharded head.

Backends return per-split :class:`~crfiqa_kernels.backends.contract.Partials`. A reducer first
reduces the split dimension and may then reduce across ranks (the sharded head all-reduces), so
the same arithmetic serves both:

    M      = max_s row_max_s
    lse    = M + log Σ_s row_sumexp_s · exp(row_max_s − M)
    ccs    = the one target cosine present (NaN if none)
    nnccs  = max_s nn_cos_s,   nn_index = the lowest global index attaining it
    (NaN where lse is NaN: see the end of combine_partials)
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .backends.contract import Partials


class RowStats(NamedTuple):
    lse: torch.Tensor
    target_cos: torch.Tensor
    nn_cos: torch.Tensor
    nn_index: torch.Tensor


class SplitReducer:
    """Reduces the leading split dimension of (S, B) partials."""

    def max(self, t: torch.Tensor) -> torch.Tensor:
        return t.amax(dim=0)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        return t.sum(dim=0)

    def min(self, t: torch.Tensor) -> torch.Tensor:
        return t.amin(dim=0)


SPLITS = SplitReducer()
_NO_INDEX = torch.iinfo(torch.int64).max


def combine_partials(partials: Partials, class_offset: int = 0, reducer: SplitReducer = SPLITS) -> RowStats:
    """Combine split partials into per-row statistics; ``class_offset`` makes indices global."""
    row_max = reducer.max(partials.row_max)
    sumexp = reducer.sum(partials.row_sumexp * torch.exp(partials.row_max - row_max))
    lse = row_max + torch.log(sumexp)

    # A split without the target reports NaN: take the max over the present ones (at most one).
    present = torch.where(torch.isnan(partials.target_cos), float("-inf"), partials.target_cos)
    target_cos = reducer.max(present)
    target_cos = torch.where(torch.isneginf(target_cos), float("nan"), target_cos)

    nn_cos = reducer.max(partials.nn_cos)
    attains = (partials.nn_cos == nn_cos) | torch.isnan(nn_cos)
    candidates = torch.where(attains, partials.nn_index + class_offset, _NO_INDEX)
    nn_index = reducer.min(candidates)

    # A NaN or Inf input touching the row makes every sum of exponentials holding it NaN, and SUM
    # keeps NaN in every reducer, while the MAX of NCCL and gloo may drop it: NNCCS follows lse,
    # so it is never silently finite.
    nn_cos = torch.where(torch.isnan(lse), float("nan"), nn_cos)
    return RowStats(lse, target_cos, nn_cos, nn_index)
