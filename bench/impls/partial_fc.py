"""arcface_torch's margin and cross-entropy (PartialFC's CombinedMarginLoss + its distributed
softmax cross-entropy), written from their description for one device.

The head takes ``clamp(ê · ŵᵀ, -1, 1)``. The ArcFace margin replaces the target logits by
``cos(arccos(c) + m2)`` *in place under no_grad*, so the gradient flows as if the margin were not
there (``margin_grad="straight_through"``); the CosFace margin subtracts ``m3`` with its gradient
(φ' = 1 either way). The logits are scaled by ``s``. The cross-entropy is a custom autograd function
with its own steps: subtract the row max, exponentiate and normalize in place (the logits buffer
becomes the probabilities, kept for the backward), loss = mean over all rows of
``−log max(p_iy, 1e-30)`` (so a row's loss is capped at −log 1e-30 ≈ 69.08, which rows far from
their class reach at initialization; ignored rows count 0 but stay in the denominator), backward
``(p − onehot) / B`` written into the same buffer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .authors import NORM_FLOOR
from .base import Semantics, Setting, loss_implementation

PROBABILITY_FLOOR = 1e-30


class _SoftmaxCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels):
        probabilities = logits  # the logits are not needed after this: reuse their buffer
        probabilities.sub_(probabilities.amax(dim=1, keepdim=True)).exp_()
        probabilities.div_(probabilities.sum(dim=1, keepdim=True))
        valid = labels >= 0
        column = labels.clamp(min=0).unsqueeze(1)
        target = torch.where(valid, probabilities.gather(1, column).squeeze(1), 1.0)
        ctx.save_for_backward(probabilities, labels)
        return target.clamp_min(PROBABILITY_FLOOR).log().neg().mean()

    @staticmethod
    def backward(ctx, grad_loss):
        probabilities, labels = ctx.saved_tensors
        valid = labels >= 0
        column = labels.clamp(min=0).unsqueeze(1)
        # ∂/∂z_ij of mean_i −log p_iy = (p_ij − [j = y_i]) / B for labelled rows, 0 for ignored ones.
        grad = probabilities
        target = grad.gather(1, column) - 1.0
        grad.scatter_(1, column, target).mul_(valid.unsqueeze(1))
        grad.mul_(grad_loss / labels.shape[0])
        return grad, None


def _build(setting: Setting):
    margin = setting.margin
    if margin.m1 != 1.0 or (margin.m2 > 0.0) == (margin.m3 > 0.0):
        raise ValueError("arcface_torch's margin here is either ArcFace (m2 > 0) or CosFace (m3 > 0), m1 = 1")

    def loss(embeddings, weight, labels):
        logits = F.linear(
            F.normalize(embeddings, dim=1, eps=NORM_FLOOR), F.normalize(weight, dim=1, eps=NORM_FLOOR)
        ).clamp(-1.0, 1.0)
        valid = (labels >= 0).unsqueeze(1)
        column = labels.clamp(min=0).unsqueeze(1)
        target = logits.gather(1, column)
        if margin.m2 > 0.0:
            with torch.no_grad():
                final = torch.where(valid, torch.cos(torch.arccos(target) + margin.m2), target)
                logits.scatter_(1, column, final.to(logits.dtype))
        else:
            logits = logits.scatter(1, column, torch.where(valid, target - margin.m3, target))
        return (_SoftmaxCrossEntropy.apply(logits.float() * margin.s, labels),)

    return loss


ARCFACE_TORCH = loss_implementation(
    "arcface_torch",
    "arcface_torch: margin in place under no_grad + its own softmax CE (B × C)",
    _build,
    Semantics(margin=True, margin_grad="straight_through", row_loss_cap=-math.log(PROBABILITY_FLOOR)),
)
