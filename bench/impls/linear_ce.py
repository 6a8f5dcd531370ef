"""``torch.nn.functional.linear_cross_entropy`` on normalized inputs: the plain softmax cross-entropy
of ``s · ê · ŵᵀ`` (no margin, no CCS / NNCCS), as PyTorch ships it.

``linear_cross_entropy`` is the default call (``options=None``: the logits are materialized);
``linear_cross_entropy_chunked`` passes ``LinearCrossEntropyOptions()``, PyTorch's batch-chunked
path that never holds all ``B × C`` logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .authors import NORM_FLOOR
from .base import Semantics, Setting, Unavailable, loss_implementation


def _builder(chunked: bool):
    def build(setting: Setting):
        if not hasattr(F, "linear_cross_entropy"):
            raise Unavailable(f"torch {torch.__version__} has no torch.nn.functional.linear_cross_entropy")
        options = torch.nn.LinearCrossEntropyOptions() if chunked else None
        scale = setting.margin.s

        def loss(embeddings, weight, labels):
            e_hat = F.normalize(embeddings, dim=1, eps=NORM_FLOOR).mul(scale)
            w_hat = F.normalize(weight, dim=1, eps=NORM_FLOOR)
            return (F.linear_cross_entropy(e_hat, w_hat, labels, ignore_index=-1, options=options),)

        return loss

    return build


SEMANTICS = Semantics(margin=False)
LINEAR_CROSS_ENTROPY = loss_implementation(
    "linear_cross_entropy",
    "F.linear_cross_entropy(s·ê, ŵ): plain CE, logits materialized",
    _builder(chunked=False),
    SEMANTICS,
)
LINEAR_CROSS_ENTROPY_CHUNKED = loss_implementation(
    "linear_cross_entropy_chunked",
    "F.linear_cross_entropy(s·ê, ŵ, options=LinearCrossEntropyOptions()): plain CE, batch-chunked",
    _builder(chunked=True),
    SEMANTICS,
)
