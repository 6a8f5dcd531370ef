"""This library's op, ``crfiqa_kernels.margin_ccs_loss``, with each backend.

Runs with ``validate=False`` (no host synchronization for the label check), as a training loop
that trusts its labels would. A backend unavailable on the device is recorded as such.
"""

from __future__ import annotations

import torch

import crfiqa_kernels as ck

from .base import Semantics, Setting, Unavailable, loss_implementation


def _probe(backend: str, device: torch.device) -> None:
    """Raise :class:`Unavailable` when ``backend`` cannot run on ``device`` (the op says why)."""
    embeddings = torch.ones(1, 2, device=device)
    try:
        ck.margin_ccs_loss(
            embeddings, torch.eye(2, device=device), torch.zeros(1, dtype=torch.long, device=device), backend=backend
        )
    except ValueError as error:
        raise Unavailable(str(error)) from None


def _builder(backend: str):
    def build(setting: Setting):
        _probe(backend, setting.device)
        margin = setting.margin

        def loss(embeddings, weight, labels):
            return tuple(ck.margin_ccs_loss(embeddings, weight, labels, margin, backend=backend, validate=False))

        return loss

    return build


SEMANTICS = Semantics(margin=True, margin_grad="exact", stats=True)
CHUNKED, TRITON, CUDA = (
    loss_implementation(backend, f"crfiqa_kernels.margin_ccs_loss(backend={backend!r})", _builder(backend), SEMANTICS)
    for backend in ("chunked", "triton", "cuda")
)
