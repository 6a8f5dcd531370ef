"""The floor: the three GEMMs of the same shapes, ``E·Wᵀ`` (forward), ``G·W`` and ``Gᵀ·E`` (backward).

Nothing else: no normalization, no softmax. The (B, C) product plays the logit gradient ``G``.
Both operands are in the compute dtype (W is cast once, outside the timed step), so on a GPU these
are three cuBLAS calls.
"""
from __future__ import annotations

import torch

from .base import Implementation, Setting


def _prepare(setting: Setting):
    compute = setting.dtype.embedding_dtype
    weight = setting.problems[0].weight.detach().to(compute)

    def forward(problem):
        with torch.no_grad():
            torch.mm(problem.embeddings.detach(), weight.T)
        return None

    def forward_backward(problem):
        with torch.no_grad():
            embeddings = problem.embeddings.detach()
            products = torch.mm(embeddings, weight.T)
            return torch.mm(products, weight), torch.mm(products.T, embeddings)

    return forward if setting.mode == "fwd" else forward_backward


FLOOR = Implementation("floor", "floor", "the three GEMMs E·Wᵀ, G·W, Gᵀ·E", _prepare)
