"""``nn.Module`` wrappers: the class-center head, the CR target and the CR-FIQA loss."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from . import backends
from .constants import CR_EPS, CR_OFFICIAL_FLOOR
from .margins import Margin, MarginFamily
from .ops import margin_ccs_loss
from .options import CR_FORMULAS
from .results import MarginCCSOutput
from .row_loss import labelled, mean_over_labelled
from .validation import check_head_arguments


class MarginCCSHead(nn.Module):
    """Class centers ``weight`` (C, D), initialized N(0, 0.01), and the fused margin loss.

    ``margin`` is any margin family (ArcFace s=64, m=0.5 by default), a submodule: its running
    statistics are part of the head's ``state_dict``. ``interclass_filter``: PartialFC's threshold
    (see :func:`~crfiqa_kernels.margin_ccs_loss`). ``forward(embeddings, labels)`` returns
    :class:`MarginCCSOutput` (mean loss over labelled rows, the family's extra loss included).
    """

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        margin: MarginFamily | None = None,
        *,
        margin_grad: str = "exact",
        interclass_filter: float | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        margin = Margin() if margin is None else margin
        check_head_arguments(
            num_classes, embedding_size, margin, margin_grad, backend, backends.NAMES, interclass_filter
        )
        self.margin = margin
        self.margin_grad = margin_grad
        self.interclass_filter = interclass_filter
        self.backend = backend
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> MarginCCSOutput:
        return margin_ccs_loss(
            embeddings,
            self.weight,
            labels,
            self.margin,
            margin_grad=self.margin_grad,
            interclass_filter=self.interclass_filter,
            backend=self.backend,
        )

    def load_official_state_dict(self, state_dict: dict) -> None:
        """Load the authors' released head, whose ``kernel`` is stored transposed as (D, C)."""
        if set(state_dict) != {"kernel"}:
            raise ValueError(f"state_dict must hold exactly the key 'kernel', got {sorted(state_dict)}")
        kernel = state_dict["kernel"]
        expected = (self.weight.shape[1], self.weight.shape[0])
        if not isinstance(kernel, torch.Tensor) or tuple(kernel.shape) != expected:
            shape = tuple(kernel.shape) if isinstance(kernel, torch.Tensor) else type(kernel).__name__
            raise ValueError(f"state_dict['kernel'] must have shape {expected} (D, C), got {shape}")
        with torch.no_grad():
            self.weight.copy_(kernel.T)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.weight.shape[0]}, embedding_size={self.weight.shape[1]}, "
            f"interclass_filter={self.interclass_filter}"
        )


def cr_target(ccs: torch.Tensor, nnccs: torch.Tensor, formula: str = "paper", eps: float = CR_EPS) -> torch.Tensor:
    """The certainty ratio regressed by the quality head (detached: a target, no gradient).

    ``"paper"``: CCS / (NNCCS + 1 + eps), the denominator in [eps, 2 + eps].
    ``"official"``: CCS / max(NNCCS, −1e-12), what the authors' released training code regresses.
    """
    if formula not in CR_FORMULAS:
        raise ValueError(f"formula must be one of {CR_FORMULAS}, got {formula!r}")
    ccs, nnccs = ccs.detach(), nnccs.detach()
    if formula == "paper":
        return ccs / (nnccs + 1.0 + eps)
    return ccs / nnccs.clamp(min=CR_OFFICIAL_FLOOR)


class CRFIQALossParts(NamedTuple):
    ce: torch.Tensor
    quality: torch.Tensor
    mean_cr: torch.Tensor
    ccs: torch.Tensor
    nnccs: torch.Tensor


class CRFIQALoss(nn.Module):
    """``CE + α · SmoothL1_β(quality, CR)`` over the labelled rows, CR detached (DESIGN §2).

    ``head`` is a :class:`MarginCCSHead` or a :class:`~crfiqa_kernels.ShardedMarginCCSHead`.
    ``forward(embeddings, quality, labels)`` returns ``(total, CRFIQALossParts)``; ``quality`` is the
    quality head's output, shape (B,) or (B, 1).
    """

    def __init__(self, head: nn.Module, alpha: float = 10.0, beta: float = 0.5, cr: str = "paper") -> None:
        super().__init__()
        if alpha < 0:
            raise ValueError(f"alpha must be non-negative, got {alpha}")
        if beta <= 0:
            raise ValueError(f"beta must be positive, got {beta}")
        if cr not in CR_FORMULAS:
            raise ValueError(f"cr must be one of {CR_FORMULAS}, got {cr!r}")
        self.head, self.alpha, self.beta, self.cr = head, float(alpha), float(beta), cr

    def forward(self, embeddings: torch.Tensor, quality: torch.Tensor, labels: torch.Tensor):
        quality = quality.reshape(-1) if quality.dim() == 2 and quality.shape[1] == 1 else quality
        if quality.shape != labels.shape:
            raise ValueError(f"quality must have shape {tuple(labels.shape)} or (B, 1), got {tuple(quality.shape)}")
        out = self.head(embeddings, labels)
        target = cr_target(out.ccs, out.nnccs, self.cr)
        valid = labelled(labels)
        per_row = F.smooth_l1_loss(quality.float(), torch.nan_to_num(target), beta=self.beta, reduction="none")
        quality_loss = mean_over_labelled(per_row, valid)
        mean_cr = mean_over_labelled(target, valid)
        total = out.loss + self.alpha * quality_loss
        return total, CRFIQALossParts(out.loss.detach(), quality_loss.detach(), mean_cr, out.ccs, out.nnccs)
