"""Fused margin-softmax cross-entropy with CR-FIQA's class-center statistics (CCS / NNCCS).

import crfiqa_kernels as ck
out = ck.margin_ccs_loss(emb, weight, labels, ck.Margin.arcface(64.0, 0.5))
out.loss.backward()       # out.ccs, out.nnccs, out.nn_index are detached statistics
"""

from .atomic_files import save_atomically, write_atomically, write_text_atomically
from .distributed import ShardedMarginCCSHead
from .heads import CRFIQALoss, CRFIQALossParts, MarginCCSHead, cr_target
from .margin import Margin
from .ops import class_stats, margin_ccs_loss
from .results import ClassStats, MarginCCSOutput

__all__ = [
    "CRFIQALoss",
    "CRFIQALossParts",
    "ClassStats",
    "Margin",
    "MarginCCSHead",
    "MarginCCSOutput",
    "ShardedMarginCCSHead",
    "class_stats",
    "cr_target",
    "margin_ccs_loss",
    "save_atomically",
    "write_atomically",
    "write_text_atomically",
]
