"""The margin families (DESIGN §2): target-logit functions over per-row tensors, and the negative
transforms the kernels apply."""

from .adaface import AdaFace
from .base import NEGATIVE_KINDS, MarginFamily, NegativeTransform, TargetTerms
from .combined import ArcFace, CosFace, Margin
from .curricular import CurricularFace
from .elastic import ElasticFace
from .magface import MagFace

__all__ = [
    "NEGATIVE_KINDS",
    "AdaFace",
    "ArcFace",
    "CosFace",
    "CurricularFace",
    "ElasticFace",
    "MagFace",
    "Margin",
    "MarginFamily",
    "NegativeTransform",
    "TargetTerms",
]
