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

from .. import class_splits

# CUDA's limit on grid axis 0 (axes 1 and 2 allow 65,535: the kernels launch one-axis grids).
MAX_GRID_X = 2**31 - 1
# Programs per streaming multiprocessor the forward grid aims for (latency hiding across tiles).
PROGRAMS_PER_SM = 2
# The backward's persistent programs: one per streaming multiprocessor. A program of 8 warps at
# 219–255 registers a thread takes a whole SM's register file (64 K), so a second one per SM would
# only wait — with a scratch slice of its own.
BACKWARD_PROGRAMS_PER_SM = 1
# The share of the L2 cache the backward's ∂ℓ/∂c scratch (programs × rows × block_c elements) may
# fill, so that phase 2 reads it back from L2 and only W and dW cross HBM (DESIGN §3.1). A batch
# whose scratch would not fit is processed in passes of fewer rows, each adding its share to dW.
SCRATCH_L2_SHARE = 0.5
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
    """Backward tiles (see :mod:`.backward_kernel`): ``splits`` persistent programs, each owning the class
    tiles of one class split, ``block_c`` classes at a time. For a class tile a program walks the
    batch in tiles of ``block_b`` rows, recomputing the cosines ``block_d`` columns at a time and
    producing its share of ``dê`` ``block_d`` columns at a time; then it forms the tile's ``dW``
    ``block_dw`` columns at a time. ``rows_per_pass`` (None: the whole batch) cuts the batch into
    passes of that many rows, one launch each, the later ones adding to ``dW``. The per-program
    scratch of ∂ℓ/∂c is (rows of a pass) × ``block_c``; on the deterministic path each program also
    owns a (rows of a pass, D) buffer of partial ``dê``."""

    block_b: int
    block_c: int
    block_d: int
    block_dw: int
    splits: int
    num_warps: int = 4
    num_stages: int = 2
    rows_per_pass: int | None = None

    def __post_init__(self) -> None:
        _check_blocks(self.block_b, self.block_c, self.block_d, self.block_dw)
        _check_positive(splits=self.splits, num_warps=self.num_warps, num_stages=self.num_stages)
        if self.rows_per_pass is not None:
            _check_positive(rows_per_pass=self.rows_per_pass)


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
    "tf32": BackwardConfig(64, 64, 16, 64, splits=1, num_warps=8, num_stages=1),
    "ieee": BackwardConfig(32, 32, 16, 128, splits=1, num_warps=8, num_stages=1),
    "fp64": BackwardConfig(16, 32, 16, 32, splits=1, num_warps=4, num_stages=1),
}

# What ``python -m bench.tune`` times against the default on a GPU (bf16/fp16 products): software
# pipelining of the recompute's loads (stages 2, 3) and batch tiles of 128 rows (half the re-reads
# of each W tile from L2, at K = 16 per step). Each compiles for sm_90 without spills
# (test_triton_compile.py); none has run on a GPU yet, so the default stays the first.
BACKWARD_CANDIDATES = {
    "half": (
        BACKWARD_BLOCKS["half"],
        dataclasses.replace(BACKWARD_BLOCKS["half"], num_stages=2),
        dataclasses.replace(BACKWARD_BLOCKS["half"], num_stages=3),
        BackwardConfig(128, 64, 16, 64, splits=1, num_warps=8, num_stages=1),
        BackwardConfig(128, 64, 16, 64, splits=1, num_warps=8, num_stages=2),
    ),
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


@dataclass(frozen=True)
class DeviceResources:
    """What the configurations size themselves to: streaming multiprocessors and L2 bytes."""

    multiprocessors: int
    l2_bytes: int


# An H100's or H200's L2, for a torch that does not report the size.
DEFAULT_L2_BYTES = 50 * 2**20


def device_resources(device: torch.device) -> DeviceResources:
    properties = torch.cuda.get_device_properties(device)
    l2_bytes = getattr(properties, "L2_cache_size", 0) or DEFAULT_L2_BYTES
    return DeviceResources(properties.multi_processor_count, l2_bytes)


def _target_programs(device: torch.device, per_sm: int = PROGRAMS_PER_SM) -> int:
    if device.type != "cuda":
        return INTERPRETER_PROGRAMS
    return per_sm * device_resources(device).multiprocessors


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
    batch: int,
    classes: int,
    dim: int,
    dtype: torch.dtype,
    device: torch.device,
    deterministic: bool,
    template: BackwardConfig | None = None,
) -> BackwardConfig:
    """Blocks for the backward (``template``'s, by default the table's) and as many persistent
    programs as fill the device (fewer when there are fewer class tiles), with row passes that keep
    the scratch within its share of L2. Deterministic path: no more than ``C / B`` programs, so the
    (S, B, D) buffers of partial ``dê`` never outgrow ``dW`` itself."""
    template = template or BACKWARD_BLOCKS[product_kind(dtype, device)]
    # A column chunk of dW no wider than D needs.
    block_dw = max(16, min(template.block_dw, _bucket(dim)))
    class_tiles = class_splits.tile_count(classes, template.block_c)
    splits = min(class_tiles, _target_programs(device, BACKWARD_PROGRAMS_PER_SM))
    if deterministic:
        splits = min(splits, max(1, classes // batch))
    splits = class_splits.plan(class_tiles, splits).count
    rows_per_pass = None
    if device.type == "cuda":
        rows_per_pass = scratch_rows(device_resources(device).l2_bytes, splits, template, dtype.itemsize)
    if rows_per_pass is not None and rows_per_pass >= batch:
        rows_per_pass = None
    return dataclasses.replace(template, block_dw=block_dw, splits=splits, rows_per_pass=rows_per_pass)


def scratch_rows(l2_bytes: int, programs: int, config: BackwardConfig, element_bytes: int) -> int:
    """The most rows (a multiple of ``block_b``, at least one batch tile) whose scratch, ``programs``
    × rows × ``block_c`` elements, fits in :data:`SCRATCH_L2_SHARE` of the L2 cache."""
    rows = int(SCRATCH_L2_SHARE * l2_bytes) // (programs * config.block_c * element_bytes)
    return max(config.block_b, rows // config.block_b * config.block_b)
