"""The margin families (DESIGN §2): target-logit functions over per-row tensors, and the negative
transforms the kernels apply."""

from .base import NEGATIVE_KINDS, MarginFamily, NegativeTransform, TargetTerms
from .combined import Margin

__all__ = ["NEGATIVE_KINDS", "Margin", "MarginFamily", "NegativeTransform", "TargetTerms"]
