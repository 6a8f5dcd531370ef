"""Reference formulas of the margin families, written from their papers and official heads.

Independent of :mod:`crfiqa_kernels`: each builds the full ``B × C`` cosine matrix and the family's
logits the way its official PyTorch head does (``m_hot`` scatters, boolean masks), the cross-entropy
with ``F.cross_entropy`` over the labelled rows, and leaves the gradients to autograd. The GEMM runs
in the inputs' dtype and everything after it in float32, or float64 for float64 inputs — the
official code in that dtype, and with float64 inputs the oracle of the family tests.

Every function takes ``(embeddings, weight, labels)`` — ``labels == -1`` marks an ignored row, which
the official codes do not have: those rows get no margin, no loss, ``CCS = NaN`` and the NNCCS of
all classes — and returns :class:`Reference`: the mean loss over the labelled rows (plus a family's
extra term), CCS, NNCCS, nn_index and the family's running state after the call.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F


class Reference(NamedTuple):
    loss: torch.Tensor
    ccs: torch.Tensor
    nnccs: torch.Tensor
    nn_index: torch.Tensor
    state: dict


def _cosines(embeddings, weight, eps=0.0):
    """``clamp(ê·ŵᵀ, −1 + eps, 1 − eps)``: normalized in the accumulate dtype, the GEMM in the
    embeddings' dtype, the result upcast (what a GEMM under autocast gives)."""
    accumulate = torch.float64 if embeddings.dtype == torch.float64 else torch.float32
    e_hat = F.normalize(embeddings.to(accumulate), dim=1).to(embeddings.dtype)
    w_hat = F.normalize(weight.to(accumulate), dim=1).to(embeddings.dtype)
    return (e_hat @ w_hat.T).to(accumulate).clamp(-1 + eps, 1 - eps)


def _finish(logits, cos, labels, extra=0.0, state=None) -> Reference:
    """Mean cross-entropy over the labelled rows (+ ``extra``) and the statistics of ``cos``."""
    index = torch.where(labels != -1)[0]
    ce = F.cross_entropy(logits[index], labels[index], reduction="sum") / max(index.numel(), 1)
    with torch.no_grad():
        own = F.one_hot(labels.clamp(min=0), cos.shape[1]).bool() & (labels != -1).unsqueeze(1)
        ccs = torch.full_like(cos[:, 0], math.nan)
        ccs[index] = cos[index, labels[index]]
        nnccs, nn_index = cos.masked_fill(own, -math.inf).max(dim=1)
    return Reference(ce + extra, ccs, nnccs, nn_index, state or {})


def elastic_draws(seed: int, m: float, std: float, labels) -> torch.Tensor:
    """The official draws after ``torch.manual_seed(seed)``: ``torch.normal(m, std, (n_valid, 1))``."""
    torch.manual_seed(seed)
    return torch.normal(mean=m, std=std, size=(int((labels != -1).sum()), 1))


def elasticface(embeddings, weight, labels, *, s, kind, plus, draws) -> Reference:
    """ElasticArcFace / ElasticCosFace of fdbtrs/ElasticFace (``head.py``), ``draws`` the
    (n_valid, 1) margins ``torch.normal`` gave."""
    cos = _cosines(embeddings, weight)
    index = torch.where(labels != -1)[0]
    margin = draws.to(cos.dtype)
    m_hot = torch.zeros(index.numel(), cos.shape[1], dtype=cos.dtype)
    if plus:
        with torch.no_grad():
            distmat = cos[index, labels[index]].detach().clone()
            _, indicate_cosine = torch.sort(distmat, dim=0, descending=True)
            margin, _ = torch.sort(margin, dim=0)
        m_hot.scatter_(1, labels[index, None], margin[indicate_cosine])
    else:
        m_hot.scatter_(1, labels[index, None], margin)
    if kind == "arc":
        theta = cos.acos()
        theta = theta.index_put((index,), theta[index] + m_hot)
        logits = theta.cos() * s
    else:
        logits = cos.index_put((index,), cos[index] - m_hot) * s
    return _finish(logits, cos, labels)


def adaface(embeddings, weight, labels, *, s, m, h, t_alpha, batch_mean, batch_std) -> Reference:
    """AdaFace of mk-minchul/AdaFace (``head.py``) with the running ``batch_mean`` / ``batch_std``
    before the call; statistics over the labelled rows, ``batch_std`` unchanged with one of them."""
    eps = 1e-3
    cos = _cosines(embeddings, weight, eps)
    norms = embeddings.to(cos.dtype).norm(dim=1, keepdim=True)
    index = torch.where(labels != -1)[0]
    safe_norms = torch.clip(norms, min=0.001, max=100).clone().detach()
    with torch.no_grad():
        if index.numel() >= 1:
            batch_mean = safe_norms[index].mean() * t_alpha + (1 - t_alpha) * batch_mean
        if index.numel() >= 2:
            batch_std = safe_norms[index].std() * t_alpha + (1 - t_alpha) * batch_std
    margin_scaler = (safe_norms - batch_mean) / (batch_std + eps)
    margin_scaler = torch.clip(margin_scaler * h, -1, 1)

    one_hot = torch.zeros_like(cos)
    one_hot[index, labels[index]] = 1.0
    m_arc = one_hot * (m * margin_scaler * -1)
    theta_m = torch.clip(cos.acos() + m_arc, min=eps, max=math.pi - eps)
    m_cos = one_hot * (m + m * margin_scaler)
    logits = (theta_m.cos() - m_cos) * s
    return _finish(logits, cos, labels, state={"batch_mean": batch_mean, "batch_std": batch_std})


def magface(embeddings, weight, labels, *, s, l_a, u_a, l_margin, u_margin, lambda_g, easy_margin) -> Reference:
    """MagLinear + MagLoss of IrvingMeng/MagFace: ``CE + λ_g·mean(g)``, ``mean(g)`` over the labelled rows."""
    cos_theta = _cosines(embeddings, weight)
    index = torch.where(labels != -1)[0]
    x_norm = torch.norm(embeddings.to(cos_theta.dtype), dim=1, keepdim=True).clamp(l_a, u_a)
    ada_margin = (u_margin - l_margin) / (u_a - l_a) * (x_norm - l_a) + l_margin
    cos_m, sin_m = torch.cos(ada_margin), torch.sin(ada_margin)
    sin_theta = torch.sqrt(1.0 - torch.pow(cos_theta, 2))
    cos_theta_m = cos_theta * cos_m - sin_theta * sin_m
    if easy_margin:
        cos_theta_m = torch.where(cos_theta > 0, cos_theta_m, cos_theta)
    else:
        mm = torch.sin(math.pi - ada_margin) * ada_margin
        threshold = torch.cos(math.pi - ada_margin)
        cos_theta_m = torch.where(cos_theta > threshold, cos_theta_m, cos_theta - mm)
    one_hot = torch.zeros_like(cos_theta)
    one_hot[index, labels[index]] = 1.0
    logits = one_hot * (s * cos_theta_m) + (1.0 - one_hot) * (s * cos_theta)
    x = x_norm[index]
    loss_g = torch.mean(1 / (u_a**2) * x + 1 / x) if index.numel() else 0.0
    return _finish(logits, cos_theta, labels, extra=lambda_g * loss_g)


def curricularface(embeddings, weight, labels, *, s, m, t) -> Reference:
    """CurricularFace of HuangYG123/CurricularFace (``head/metrics.py``) with the running ``t``
    before the call; its mean over the labelled rows, ``t`` unchanged without any."""
    cos_m, sin_m = math.cos(m), math.sin(m)
    threshold, mm = math.cos(math.pi - m), math.sin(math.pi - m) * m
    cos_theta = _cosines(embeddings, weight)
    origin_cos = cos_theta.detach().clone()
    index = torch.where(labels != -1)[0]
    target_logit = cos_theta[index, labels[index]].view(-1, 1)
    sin_theta = torch.sqrt(1.0 - torch.pow(target_logit, 2))
    cos_theta_m = target_logit * cos_m - sin_theta * sin_m
    cos_theta = cos_theta[index]
    mask = cos_theta > cos_theta_m
    final_target_logit = torch.where(target_logit > threshold, cos_theta_m, target_logit - mm)
    hard_example = cos_theta[mask]
    with torch.no_grad():
        if index.numel():
            t = target_logit.mean() * 0.01 + (1 - 0.01) * t
    cos_theta = cos_theta.masked_scatter(mask, hard_example * (t + hard_example))
    cos_theta = cos_theta.scatter(1, labels[index].view(-1, 1), final_target_logit)
    logits = torch.zeros_like(origin_cos).index_put((index,), cos_theta * s)
    return _finish(logits, origin_cos, labels, state={"t": t})
