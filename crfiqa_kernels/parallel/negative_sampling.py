"""Class sampling for the cross-entropy of one shard (``sample_rate < 1``, as in PartialFC).

The cross-entropy of a step runs over a subset of the shard's classes: every class that is the
label of a row of the global batch (the positives) plus classes drawn uniformly at random without
replacement among the others (the negatives), ``max(num_sample, #positives)`` classes in all. The
denominator of the softmax then sums over the sample only, an estimate that keeps each row's own
class.
"""

from __future__ import annotations

import torch


def sample_classes(labels_local: torch.Tensor, num_local: int, num_sample: int) -> torch.Tensor:
    """Sorted local indices of the sampled classes: the positives of ``labels_local`` (``-1`` =
    none in this shard) and uniformly random negatives up to ``num_sample`` classes.

    Each class gets a uniform priority in [0, 1), the positives priority 2; the top
    ``max(num_sample, #positives)`` priorities are the sample (one host synchronization for the
    number of positives). Draws from the default generator of the labels' device.
    """
    positive = torch.zeros(num_local, dtype=torch.bool, device=labels_local.device)
    positive[labels_local[labels_local >= 0]] = True
    priority = torch.rand(num_local, device=labels_local.device).masked_fill_(positive, 2.0)
    size = max(num_sample, int(positive.sum()))
    return priority.topk(size).indices.sort().values


def labels_in_sample(labels_local: torch.Tensor, sampled: torch.Tensor, num_local: int) -> torch.Tensor:
    """``labels_local`` as positions in ``sampled`` (``-1`` stays ``-1``); every label must be sampled."""
    position = torch.full((num_local,), -1, dtype=torch.int64, device=sampled.device)
    position[sampled] = torch.arange(sampled.numel(), device=sampled.device)
    return torch.where(labels_local >= 0, position[labels_local.clamp(min=0)], -1)
