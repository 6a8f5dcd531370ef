"""Fused margin-softmax cross-entropy with CR-FIQA's class-center statistics (CCS / NNCCS).

import crfiqa_kernels as ck
out = ck.margin_ccs_loss(emb, weight, labels, ck.ArcFace(s=64.0, m=0.5))
out.loss.backward()       # out.ccs, out.nnccs, out.nn_index are detached statistics

The public names load on first use (PEP 562), so ``crfiqa_kernels.options`` imports without torch
(a command line lists the option names before it needs the op).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Public name -> the module that defines it.
_EXPORTS = {
    "AdaFace": ".margins",
    "ArcFace": ".margins",
    "CosFace": ".margins",
    "CRFIQALoss": ".heads",
    "CRFIQALossParts": ".heads",
    "ClassStats": ".results",
    "CurricularFace": ".margins",
    "ElasticFace": ".margins",
    "MagFace": ".margins",
    "Margin": ".margins",
    "MarginFamily": ".margins",
    "MarginCCSHead": ".heads",
    "MarginCCSOutput": ".results",
    "ShardedMarginCCSHead": ".parallel",
    "class_stats": ".ops",
    "cr_target": ".heads",
    "margin_ccs_loss": ".ops",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # the same names for type checkers, as explicit re-exports
    from .heads import CRFIQALoss as CRFIQALoss
    from .heads import CRFIQALossParts as CRFIQALossParts
    from .heads import MarginCCSHead as MarginCCSHead
    from .heads import cr_target as cr_target
    from .margins import AdaFace as AdaFace
    from .margins import ArcFace as ArcFace
    from .margins import CosFace as CosFace
    from .margins import CurricularFace as CurricularFace
    from .margins import ElasticFace as ElasticFace
    from .margins import MagFace as MagFace
    from .margins import Margin as Margin
    from .margins import MarginFamily as MarginFamily
    from .ops import class_stats as class_stats
    from .ops import margin_ccs_loss as margin_ccs_loss
    from .parallel import ShardedMarginCCSHead as ShardedMarginCCSHead
    from .results import ClassStats as ClassStats
    from .results import MarginCCSOutput as MarginCCSOutput


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
