"""The authors' formulation of the CR-FIQA head (DESIGN §2), in eager PyTorch and under torch.compile.

As the original training code does, it materializes every ``B × C`` step: the clamped cosine
matrix, arccos over the whole matrix, the margin added at the label columns through a one-hot
matrix, cos, the scale, a softmax cross-entropy, and cloned matrices for CCS / NNCCS. Only the
additive angular margin (ArcFace) exists in that formulation.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F

from crfiqa_kernels import Margin

from .base import Semantics, Setting, Unavailable, loss_implementation

NORM_FLOOR = 1e-12


def authors_formulation(embeddings, weight, labels, margin: Margin):
    """``(loss, ccs, nnccs)``; labels ``-1`` are ignored rows (no loss, CCS NaN)."""
    if margin.m1 != 1.0 or margin.m3 != 0.0:
        raise ValueError("the authors' formulation has the additive angular margin only (m1 = 1, m3 = 0)")
    e_hat = F.normalize(embeddings, dim=1, eps=NORM_FLOOR)
    w_hat = F.normalize(weight, dim=1, eps=NORM_FLOOR)
    cos = torch.mm(e_hat, w_hat.T).clamp(-1.0, 1.0)

    valid = (labels >= 0).unsqueeze(1)
    column = labels.clamp(min=0).unsqueeze(1)
    with torch.no_grad():
        # A clone of the cosines: CCS is its label column; NNCCS its max once that column is masked.
        others = cos.detach().clone()
        target = others.gather(1, column)
        ccs = torch.where(valid, target, float("nan")).squeeze(1)
        nnccs = others.scatter_(1, column, torch.where(valid, float("-inf"), target)).amax(dim=1)
        del others

    one_hot = torch.zeros_like(cos).scatter_(1, column, torch.where(valid, margin.m2, 0.0).to(cos.dtype))
    theta = torch.arccos(cos)
    theta.add_(one_hot)  # arccos keeps its input for the backward, so θ can take the margin in place
    del one_hot
    logits = torch.cos(theta).mul_(margin.s)
    loss = F.cross_entropy(logits, labels, ignore_index=-1)
    return loss, ccs, nnccs


def _eager(setting: Setting):
    margin = setting.margin
    return lambda embeddings, weight, labels: authors_formulation(embeddings, weight, labels, margin)


def _compiled(setting: Setting):
    margin = setting.margin
    if setting.device.type == "cuda" and setting.compile_backend == "inductor":
        if importlib.util.find_spec("triton") is None:  # inductor generates Triton kernels on CUDA
            raise Unavailable("torch.compile on CUDA needs triton, which is not installed")

    def formulation(embeddings, weight, labels):
        return authors_formulation(embeddings, weight, labels, margin)

    return torch.compile(formulation, backend=setting.compile_backend, dynamic=False)


SEMANTICS = Semantics(margin=True, margin_grad="exact", stats=True)
AUTHORS_EAGER = loss_implementation(
    "authors_eager", "the authors' formulation (B × C matrices), eager PyTorch", _eager, SEMANTICS
)
AUTHORS_COMPILED = loss_implementation(
    "authors_compiled", "the authors' formulation under torch.compile", _compiled, SEMANTICS
)
