"""The floors: the cuBLAS GEMMs of the same shapes, nothing else (no normalization, no softmax).

``floor``: the three GEMMs of a design that materializes the (B, C) logits, ``E·Wᵀ`` (forward),
``G·W`` and ``Gᵀ·E`` (backward). ``floor4``: the four products of a design that keeps nothing of
size B × C (DESIGN §3.1): the forward ``E·Wᵀ``, one recompute of it in the backward, ``G·W`` and
``Gᵀ·E``. In ``fwd`` mode both are the one forward product, so ``floor4`` runs in ``fwd_bwd`` only.
The (B, C) product plays the logit gradient ``G``. Both operands are in the compute dtype (W is
cast once, outside the timed step), so on a GPU these are three (four) cuBLAS calls.
"""

from __future__ import annotations

import torch

from .base import Implementation, Setting


def _prepare(setting: Setting, recompute: bool = False):
    compute = setting.dtype.embedding_dtype
    weight = setting.problems[0].weight.detach().to(compute)

    def forward(problem):
        with torch.no_grad():
            torch.mm(problem.embeddings.detach(), weight.T)

    def forward_backward(problem):
        with torch.no_grad():
            embeddings = problem.embeddings.detach()
            products = torch.mm(embeddings, weight.T)
            if recompute:  # the backward's recompute of the cosine tiles
                products = torch.mm(embeddings, weight.T)
            return torch.mm(products, weight), torch.mm(products.T, embeddings)

    return forward if setting.mode == "fwd" else forward_backward


def _prepare_four(setting: Setting):
    return _prepare(setting, recompute=True)


FLOOR = Implementation("floor", "floor", "the three GEMMs E·Wᵀ, G·W, Gᵀ·E", _prepare)
FLOOR4 = Implementation(
    "floor4", "floor", "the four products E·Wᵀ, E·Wᵀ again, G·W, Gᵀ·E (DESIGN §3.1)", _prepare_four, modes=("fwd_bwd",)
)
