"""Named results returned by the public ops."""

from __future__ import annotations

from typing import NamedTuple

import torch


class MarginCCSOutput(NamedTuple):
    """``loss`` is differentiable; the statistics are detached.

    ``ccs``: cosine to the own class center (NaN for ignored rows);
    ``nnccs``: cosine to the nearest other class center (over all classes for ignored rows);
    ``nn_index``: the class of ``nnccs`` (lowest index on ties).
    """

    loss: torch.Tensor
    ccs: torch.Tensor
    nnccs: torch.Tensor
    nn_index: torch.Tensor


class ClassStats(NamedTuple):
    """Forward-only class-center statistics.

    With labels, ``ccs``/``nnccs``/``nn_index`` are as in :class:`MarginCCSOutput`. Without labels the
    top class plays the own class: ``ccs`` is the best cosine, ``nnccs`` the second best and
    ``nn_index`` its class. ``top_class`` is the arg-max class over all centers in both cases.
    """

    ccs: torch.Tensor
    nnccs: torch.Tensor
    nn_index: torch.Tensor
    top_class: torch.Tensor
