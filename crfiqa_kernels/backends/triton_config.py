"""Block sizes, warps, stages and class splits of the Triton kernels.

Blocks come from a table keyed on the kind of tile product (bf16/fp16, tf32, IEEE fp32, fp64, or
the CPU interpreter) and the embedding size's power-of-two bucket; splits follow from the batch,
the class count and the device's SM count. An autotuner can key its table on the same buckets.
Under ``TRITON_INTERPRET=1`` (CPU tests) the interpreter's cost grows with the number of tile
steps rather than their size, so moderate tiles (32 × 64 × 64) run fastest there; tests that need
many tiles pass small configurations explicitly.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import torch

from . import class_splits

# CUDA's limit on grid axis 0 (axes 1 and 2 allow 65,535: the kernels launch one-axis grids).
MAX_GRID_X = 2**31 - 1
# Programs per streaming multiprocessor the forward grid aims for (latency hiding across tiles).
PROGRAMS_PER_SM = 2
# Under the interpreter a few programs suffice: they run one after another anyway.
INTERPRETER_PROGRAMS = 4


def interpreting() -> bool:
    """True when Triton kernels are run by the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


@dataclass(frozen=True)
class ForwardConfig:
    """Forward tiles: ``block_b`` rows × ``block_c`` classes, the product reduced over ``block_d``
    columns at a time; ``splits`` class splits (grid axis 1), each walking consecutive class tiles."""

    block_b: int
    block_c: int
    block_d: int
    splits: int
    num_warps: int = 4
    num_stages: int = 2

    def __post_init__(self) -> None:
        _check_blocks(self.block_b, self.block_c, self.block_d)
        _check_positive(splits=self.splits, num_warps=self.num_warps, num_stages=self.num_stages)


@dataclass(frozen=True)
class BackwardConfig:
    """Backward tiles (see :mod:`.triton_bwd`): ``splits`` persistent programs, each owning the class
    tiles of one class split, ``block_c`` classes at a time. For a class tile a program walks the
    batch in tiles of ``block_b`` rows, recomputing the cosines ``block_d`` columns at a time and
    producing its share of ``dê`` ``block_d`` columns at a time; then it forms the tile's ``dW``
    ``block_dw`` columns at a time. The per-program scratch of ∂ℓ/∂c is B × ``block_c``; on the
    deterministic path each program also owns a (B, D) buffer of partial ``dê``."""

    block_b: int
    block_c: int
    block_d: int
    block_dw: int
    splits: int
    num_warps: int = 4
    num_stages: int = 2

    def __post_init__(self) -> None:
        _check_blocks(self.block_b, self.block_c, self.block_d, self.block_dw)
        _check_positive(splits=self.splits, num_warps=self.num_warps, num_stages=self.num_stages)


def _check_blocks(*blocks: int) -> None:
    for block in blocks:
        if block < 16 or block & (block - 1):
            raise ValueError(f"block sizes must be powers of two ≥ 16 (tl.dot's minimum), got {block}")


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be ≥ 1, got {value}")


# GPU defaults, per kind of tile product. Compiled offline for sm_90 (H100) with Triton 3.6 and 3.9
# none of these spills registers (tests/crfiqa_kernels/test_triton_compile.py): the backward holds
# the tiles of its phase 1 (cosines, ∂ℓ/∂c, a column block of dê) and the dW accumulator of its
# phase 2 within the 255 registers a thread may use. ``splits`` is filled in per problem.
FORWARD_BLOCKS = {
    "interpreter": ForwardConfig(32, 64, 64, splits=1, num_warps=1, num_stages=1),
    "half": ForwardConfig(64, 128, 32, splits=1, num_warps=8, num_stages=3),
    "tf32": ForwardConfig(64, 128, 32, splits=1, num_warps=8, num_stages=2),
    "ieee": ForwardConfig(64, 64, 16, splits=1, num_warps=8, num_stages=2),  # fp32 on the FMA units
    "fp64": ForwardConfig(32, 32, 16, splits=1, num_warps=4, num_stages=2),
}
BACKWARD_BLOCKS = {
    "interpreter": BackwardConfig(32, 64, 64, 128, splits=1, num_warps=1, num_stages=1),
    "half": BackwardConfig(64, 64, 32, 64, splits=1, num_warps=8, num_stages=1),
    "tf32": BackwardConfig(64, 64, 16, 128, splits=1, num_warps=8, num_stages=1),
    "ieee": BackwardConfig(32, 32, 16, 128, splits=1, num_warps=8, num_stages=1),
    "fp64": BackwardConfig(16, 32, 16, 32, splits=1, num_warps=4, num_stages=1),
}


def product_kind(dtype: torch.dtype, device: torch.device) -> str:
    """Which tile products the kernels will run: the key of the block tables."""
    if interpreting() or device.type != "cuda":
        return "interpreter"
    if dtype in (torch.float16, torch.bfloat16):
        return "half"
    if dtype == torch.float32:
        return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"
    return "fp64"


def _target_programs(device: torch.device) -> int:
    if device.type != "cuda":
        return INTERPRETER_PROGRAMS
    return PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count


def _bucket(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def forward_config(batch: int, classes: int, dim: int, dtype: torch.dtype, device: torch.device) -> ForwardConfig:
    """Blocks for the forward partials and enough class splits to fill the device: with B = 512
    rows in tiles of 64 (8 batch tiles) an H100's 132 SMs get 2 × 132 programs when C allows it."""
    template = FORWARD_BLOCKS[product_kind(dtype, device)]
    batch_tiles = math.ceil(batch / template.block_b)
    class_tiles = class_splits.tile_count(classes, template.block_c)
    splits = min(class_tiles, math.ceil(_target_programs(device) / batch_tiles))
    return dataclasses.replace(template, splits=class_splits.plan(class_tiles, splits).count)


def backward_config(
    batch: int, classes: int, dim: int, dtype: torch.dtype, device: torch.device, deterministic: bool
) -> BackwardConfig:
    """Blocks for the backward and as many persistent programs as fill the device (fewer when there
    are fewer class tiles). Deterministic path: no more than ``C / B`` programs, so the (S, B, D)
    buffers of partial ``dê`` never outgrow ``dW`` itself."""
    template = BACKWARD_BLOCKS[product_kind(dtype, device)]
    # A column chunk of dW no wider than D needs.
    block_dw = max(16, min(template.block_dw, _bucket(dim)))
    class_tiles = class_splits.tile_count(classes, template.block_c)
    splits = min(class_tiles, _target_programs(device))
    if deterministic:
        splits = min(splits, max(1, classes // batch))
    return dataclasses.replace(template, block_dw=block_dw, splits=class_splits.plan(class_tiles, splits).count)
