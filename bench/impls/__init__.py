"""The implementations the harness knows, by name (one module per family)."""

from __future__ import annotations

from .authors import AUTHORS_COMPILED, AUTHORS_EAGER
from .base import MODES, Implementation, Semantics, Setting, Unavailable
from .floor import FLOOR, FLOOR4
from .fused_peers import CUT_CROSS_ENTROPY, LIGER
from .labelled_stats import CLASS_STATS_LABELLED
from .linear_ce import LINEAR_CROSS_ENTROPY, LINEAR_CROSS_ENTROPY_CHUNKED
from .ours import CHUNKED, CUDA, TRITON
from .partial_fc import ARCFACE_TORCH
from .search import CLASS_STATS, FAISS_TOP2

IMPLEMENTATIONS = {
    impl.name: impl
    for impl in (
        AUTHORS_EAGER,
        AUTHORS_COMPILED,
        LINEAR_CROSS_ENTROPY,
        LINEAR_CROSS_ENTROPY_CHUNKED,
        ARCFACE_TORCH,
        LIGER,
        CUT_CROSS_ENTROPY,
        CHUNKED,
        TRITON,
        CUDA,
        FLOOR,
        FLOOR4,
        CLASS_STATS,
        CLASS_STATS_LABELLED,
        FAISS_TOP2,
    )
}


def get_implementation(name: str) -> Implementation:
    try:
        return IMPLEMENTATIONS[name]
    except KeyError:
        raise ValueError(f"unknown implementation {name!r}; known: {', '.join(IMPLEMENTATIONS)}") from None


__all__ = ["IMPLEMENTATIONS", "MODES", "Implementation", "Semantics", "Setting", "Unavailable", "get_implementation"]
