"""From combined row statistics to the loss (DESIGN §2), for the single-device op, the sharded head
and the CR-FIQA loss: the ignored-row mask, ``ℓ_i`` and the reductions over labelled rows.

The oracle (:mod:`.reference`) restates this arithmetic on purpose: an oracle sharing code with
what it checks could not catch a mistake in it.
"""

from __future__ import annotations

import torch

from .margins import Margin


def labelled(labels: torch.Tensor) -> torch.Tensor:
    """The rows that count: ``y_i ≥ 0`` (``-1`` marks an ignored row)."""
    return labels >= 0


def labelled_only(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``values`` on labelled rows, 0 on ignored ones (no loss, no gradient, whatever they hold)."""
    return torch.where(valid, values, 0.0)


def margin_row_loss(lse: torch.Tensor, target_cos: torch.Tensor, valid: torch.Tensor, margin: Margin) -> torch.Tensor:
    """``ℓ_i = lse_i − s·φ(CCS_i)`` for labelled rows, 0 for ignored ones."""
    return labelled_only(lse - margin.s * margin.phi(target_cos), valid)


def mean_over_labelled(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over the labelled rows, 0 if there are none."""
    return labelled_only(values, valid).sum() / valid.sum().clamp(min=1)


def reduce_rows(row_loss: torch.Tensor, valid: torch.Tensor, reduction: str) -> torch.Tensor:
    """``"mean"`` over labelled rows (0 if none), ``"sum"``, or ``"none"`` (the rows themselves)."""
    if reduction == "mean":
        return mean_over_labelled(row_loss, valid)
    if reduction == "sum":
        return row_loss.sum()
    return row_loss
