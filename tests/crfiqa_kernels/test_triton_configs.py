"""Every block configuration the GPU may pick runs under the interpreter against the oracle.

The block tables (``FORWARD_BLOCKS`` / ``BACKWARD_BLOCKS`` for half, tf32, IEEE and fp64 products),
the tuner's candidates (``BACKWARD_CANDIDATES``), several class splits or persistent programs and
row passes: each launched on a problem whose B, C and D are multiples of none of its blocks (every
block is a power of two ≥ 16; B = 71, C = 150, D = 72 span several tiles of most of them and a
ragged last one), on both backward paths. So the first GPU run executes code paths that already
ran here, not only the interpreter's own table. The rule is DESIGN §7's (``tests/crfiqa_kernels/
oracle.py``): ``|impl − oracle| ≤ |same-dtype chunked − oracle| + tol``.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from crfiqa_kernels.backends import chunked
from crfiqa_kernels.backends import triton as triton_backend
from crfiqa_kernels.backends.contract import LogitParams
from crfiqa_kernels.backends.triton import backward_kernel as triton_bwd
from crfiqa_kernels.backends.triton import config as triton_config
from crfiqa_kernels.combine import combine_partials

from ..flags import torch_flags
from .oracle import assert_within_bound, make_problem

BATCH, CLASSES, DIM = 71, 150, 72
# The dtype whose tile products each table serves (tf32 only changes the products on a GPU).
KIND_DTYPE = {"half": torch.bfloat16, "tf32": torch.float32, "ieee": torch.float32, "fp64": torch.float64}
# The table's kinds run in the fast tier with the half kind; the others are `slow`.
FAST_KINDS = ("half",)


def margin_arguments():
    """The kernels' logit arguments, the one place that builds them (s = 64, no negative transform):
    those after the labels (both kernels) and those after the row gradient (backward: none)."""
    return (LogitParams(s=64.0),), ()


def _inputs(dtype, seed):
    """ê in ``dtype``, raw W (float32, or float64 with a float64 ê), 1/‖W‖, labels with an ignored
    row and one whose target is on another shard, a row gradient that is zero on one row."""
    weight_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    problem = make_problem(BATCH, CLASSES, DIM, dtype=weight_dtype, seed=seed, ignored=(0, BATCH - 1))
    e_hat = F.normalize(problem.embeddings, dim=1).to(dtype)
    w_inv_norm = 1.0 / problem.weight.norm(dim=1).clamp(min=1e-12)
    problem.labels[2], problem.row_grad[1] = -1, 0.0
    return e_hat, problem.weight, w_inv_norm, problem.labels, problem.row_grad


def _as_float64(*tensors):
    return tuple(t.double() if t.is_floating_point() else t for t in tensors)


def _check_forward(config, dtype, seed):
    """The forward partials, combined, against the oracle's lse, target and nearest cosines."""
    forward_margin, _ = margin_arguments()
    e_hat, weight, w_inv_norm, labels, _ = _inputs(dtype, seed)
    impl = combine_partials(
        triton_backend.forward_partials(e_hat, weight, w_inv_norm, labels, *forward_margin, config=config)
    )
    same = combine_partials(chunked.forward_partials(e_hat, weight, w_inv_norm, labels, *forward_margin))
    oracle = combine_partials(
        chunked.forward_partials(*_as_float64(e_hat, weight, w_inv_norm), labels, *forward_margin)
    )
    for field in ("lse", "target_cos", "nn_cos"):
        assert_within_bound(field, getattr(impl, field), getattr(same, field), getattr(oracle, field), dtype)


def _check_backward(config, dtype, seed, deterministic):
    """dê and dW for the oracle's lse against the float64 chunked backward."""
    forward_margin, backward_margin = margin_arguments()
    e_hat, weight, w_inv_norm, labels, row_grad = _inputs(dtype, seed)
    exact = _as_float64(e_hat, weight, w_inv_norm)
    lse = combine_partials(chunked.forward_partials(*exact, labels, *forward_margin)).lse.to(w_inv_norm.dtype)
    tail = (lse, row_grad, *backward_margin)
    with torch_flags(deterministic=deterministic):
        impl = triton_backend.backward(e_hat, weight, w_inv_norm, labels, *forward_margin, *tail, config=config)
    same = chunked.backward(e_hat, weight, w_inv_norm, labels, *forward_margin, *tail)
    oracle = chunked.backward(*exact, labels, *forward_margin, *_as_float64(lse, row_grad), *backward_margin)
    for name, index in (("d_e_hat", 0), ("d_weight", 1)):
        assert_within_bound(name, impl[index], same[index], oracle[index], dtype)


def _kinds(table):
    return [
        pytest.param(kind, marks=() if kind in FAST_KINDS else pytest.mark.slow, id=kind)
        for kind in table
        if kind != "interpreter"
    ]


def _class_tiles(block_c: int) -> int:
    return -(-CLASSES // block_c)


def _assert_multiple_of_none(*blocks: int) -> None:
    assert all(n % block for n in (BATCH, CLASSES, DIM) for block in blocks), blocks


@pytest.mark.parametrize("kind", _kinds(triton_config.FORWARD_BLOCKS))
def test_forward_table_config(kind):
    """The table's blocks, warps and stages with as many class splits as there are class tiles."""
    template = triton_config.FORWARD_BLOCKS[kind]
    _assert_multiple_of_none(template.block_b, template.block_c, template.block_d)
    config = dataclasses.replace(template, splits=_class_tiles(template.block_c))
    _check_forward(config, KIND_DTYPE[kind], seed=101)


@pytest.mark.parametrize("path", ["atomic", "deterministic"])
@pytest.mark.parametrize("kind", _kinds(triton_config.BACKWARD_BLOCKS))
def test_backward_table_config(kind, path):
    """The table's blocks with two persistent programs and row passes of one batch tile (71 rows
    in passes of 64 + 7, or 32 + 32 + 7, or 16 × 4 + 7), the later passes adding to dW."""
    template = triton_config.BACKWARD_BLOCKS[kind]
    _assert_multiple_of_none(template.block_b, template.block_c, template.block_d, template.block_dw)
    config = dataclasses.replace(template, splits=2, rows_per_pass=template.block_b)
    plan = triton_bwd.plan_backward(BATCH, CLASSES, DIM, config, path == "deterministic")
    assert len(plan.passes) > 1 and plan.splits.count == 2
    _check_backward(config, KIND_DTYPE[kind], seed=103, deterministic=path == "deterministic")


CANDIDATES = [
    pytest.param(candidate, marks=() if index == 0 else pytest.mark.slow, id=f"{kind}-{index}")
    for kind, candidates in triton_config.BACKWARD_CANDIDATES.items()
    for index, candidate in enumerate(candidates)
]


@pytest.mark.parametrize("candidate", CANDIDATES)
def test_backward_tuner_candidate(candidate):
    """What ``bench.tune`` may pick, as ``backward_config`` sizes it for a CPU problem (programs,
    dW chunk), in bf16 on the atomic path."""
    _assert_multiple_of_none(candidate.block_b, candidate.block_c, candidate.block_d, candidate.block_dw)
    config = triton_config.backward_config(
        BATCH, CLASSES, DIM, torch.bfloat16, torch.device("cpu"), False, template=candidate
    )
    assert config.splits > 1
    _check_backward(config, torch.bfloat16, seed=107, deterministic=False)
