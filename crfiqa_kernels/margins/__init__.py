"""The margin families (DESIGN §2): target-logit functions over per-row tensors, and the negative
transforms the kernels apply."""

from .base import NEGATIVE_KINDS, MarginFamily, NegativeTransform, TargetTerms
from .combined import ArcFace, CosFace, Margin

__all__ = ["NEGATIVE_KINDS", "ArcFace", "CosFace", "Margin", "MarginFamily", "NegativeTransform", "TargetTerms"]
