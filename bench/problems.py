"""Benchmark inputs: dtype settings and sets of rotating problems sharing one weight matrix."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .shapes import Shape


@dataclass(frozen=True)
class DtypeSetting:
    """``fp32``: everything float32. ``bf16``: autocast, bf16 embeddings, float32 master weights."""

    name: str
    embedding_dtype: torch.dtype
    autocast_dtype: torch.dtype | None

    def autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)


DTYPES = {
    "fp32": DtypeSetting("fp32", torch.float32, None),
    "bf16": DtypeSetting("bf16", torch.bfloat16, torch.bfloat16),
}


def get_dtype(name: str) -> DtypeSetting:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; known: {', '.join(DTYPES)}") from None


@dataclass(frozen=True)
class Problem:
    """One step's inputs: raw embeddings (B, D) and weight (C, D), both leaves requiring grad."""

    embeddings: torch.Tensor
    weight: torch.Tensor
    labels: torch.Tensor


def make_problems(shape: Shape, dtype: DtypeSetting, device: torch.device, count: int, seed: int) -> list[Problem]:
    """``count`` problems with fresh embeddings and labels and one shared weight.

    Rotating the embeddings between repeats keeps a step from reusing the previous one's cache
    lines; the weight (the large operand, far bigger than any cache at the real shapes) is shared
    so that XL fits. The weight follows the heads' N(0, 0.01) initialization.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    weight = torch.randn(shape.classes, shape.dim, device=device, generator=generator).mul_(0.01)
    weight.requires_grad_(True)
    problems = []
    for _ in range(count):
        embeddings = torch.randn(shape.batch, shape.dim, device=device, generator=generator)
        labels = torch.randint(0, shape.classes, (shape.batch,), device=device, generator=generator)
        problems.append(Problem(embeddings.to(dtype.embedding_dtype).requires_grad_(True), weight, labels))
    return problems
