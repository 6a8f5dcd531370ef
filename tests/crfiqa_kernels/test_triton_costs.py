"""What the Triton kernels cost, checked on a CPU (DESIGN §3.1, §8).

- Work: the multiply-adds every ``tl.dot`` issues, counted under the interpreter, in
  GEMM-equivalents of B·C·D: the forward is one, the backward three (one recompute of each cosine
  tile, ∂ℓ/∂ê, ∂ℓ/∂W) — four in all, on the default and the deterministic path.
- Launches: the grids the launchers ask for at 50 million classes and 65,536 rows, recorded by a
  stand-in kernel on meta tensors (nothing runs, nothing is allocated), stay within CUDA's limits;
  the backward's scratch does not grow with C.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from triton.runtime import interpreter

from crfiqa_kernels import Margin, margin_ccs_loss
from crfiqa_kernels.backends.contract import LogitParams
from crfiqa_kernels.backends.triton import backward_kernel as triton_bwd
from crfiqa_kernels.backends.triton import config as triton_config
from crfiqa_kernels.backends.triton import forward_kernel as triton_fwd

from ..flags import torch_flags
from .oracle import make_problem

ARCFACE = Margin.arcface()
LOGITS = LogitParams(s=64.0)
MAX_GRID_X, MAX_GRID_YZ = 2**31 - 1, 65_535


@contextlib.contextmanager
def counting_dots(counter: list):
    """Adds M·N·K to ``counter[0]`` for every product the interpreter's ``tl.dot`` forms."""
    original = interpreter.InterpreterBuilder.create_dot

    def create_dot(self, a, b, *args, **kwargs):
        (m, k), n = a.data.shape, b.data.shape[1]
        counter[0] += m * n * k
        return original(self, a, b, *args, **kwargs)

    interpreter.InterpreterBuilder.create_dot = create_dot
    try:
        yield
    finally:
        interpreter.InterpreterBuilder.create_dot = original


@pytest.mark.parametrize("deterministic", [False, True], ids=["atomic", "deterministic"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("dim", [128, pytest.param(512, marks=pytest.mark.slow)])
def test_forward_and_backward_cost_four_gemm_equivalents(dim, dtype, deterministic):
    """With the backend's own (interpreter) blocks, B and C multiples of them: forward 1, backward 3."""
    if not triton_fwd.INTERPRETED:
        pytest.skip("counts the interpreter's products; tests/conftest.py sets it up without a GPU")
    batch, classes = 64, 256
    blocks = triton_config.BACKWARD_BLOCKS["interpreter"], triton_config.FORWARD_BLOCKS["interpreter"]
    assert all(batch % b.block_b == 0 and classes % b.block_c == 0 and dim % b.block_d == 0 for b in blocks)
    problem = make_problem(batch, classes, dim, dtype=dtype, seed=dim)
    embeddings = problem.embeddings.requires_grad_()
    weight = problem.weight.float().requires_grad_()
    gemm = batch * classes * dim

    forward, backward = [0], [0]
    with torch_flags(deterministic=deterministic):
        with counting_dots(forward):
            out = margin_ccs_loss(embeddings, weight, problem.labels, ARCFACE, backend="triton")
        with counting_dots(backward):
            out.loss.backward()
    assert forward[0] == gemm, forward[0] / gemm
    assert backward[0] == 3 * gemm, backward[0] / gemm
    assert forward[0] + backward[0] <= 4.05 * gemm
    assert embeddings.grad is not None and weight.grad is not None


# ------------------------------------------------------------------------------------------------
# Launch grids at the largest sizes, without running a kernel.
# ------------------------------------------------------------------------------------------------


class RecordingKernel:
    """Stands in for a Triton kernel: ``kernel[grid](...)`` records the grid and launches nothing."""

    def __init__(self):
        self.grids = []

    def __getitem__(self, grid):
        self.grids.append(tuple(grid))
        return lambda *args, **kwargs: None


def _assert_within_cuda_limits(grid, where):
    assert 1 <= len(grid) <= 3, where
    assert 1 <= grid[0] <= MAX_GRID_X, f"{where}: axis 0 is {grid[0]}"
    assert all(1 <= axis <= MAX_GRID_YZ for axis in grid[1:]), f"{where}: grid {grid}"


KINDS = [
    (torch.float16, False),
    (torch.bfloat16, False),
    (torch.float32, True),
    (torch.float32, False),
    (torch.float64, False),
]


@pytest.mark.parametrize("dtype,tf32", KINDS, ids=lambda v: str(v))
def test_launch_grids_respect_cuda_limits_at_50_million_classes(dtype, tf32, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # the GPU's block tables
    forward, backward = RecordingKernel(), RecordingKernel()
    monkeypatch.setattr(triton_fwd, "_forward_partials_kernel", forward)
    monkeypatch.setattr(triton_bwd, "_backward_kernel", backward)
    gpu, meta = torch.device("cuda"), torch.device("meta")
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    dim = 512
    with torch_flags(tf32=tf32):  # the tf32 or IEEE block table
        for multiprocessors in (1, 132, 1024):
            monkeypatch.setattr(
                triton_config,
                "device_resources",
                lambda device, sms=multiprocessors: triton_config.DeviceResources(sms, 50 * 2**20),
            )
            for batch in (1, 4096, 65_536):
                for classes in (1, 85_742, 2_059_906, 50_000_000):
                    e_hat = torch.empty(batch, dim, dtype=dtype, device=meta)
                    weight = torch.empty(classes, dim, dtype=torch.float32, device=meta)
                    w_inv_norm = torch.empty(classes, dtype=acc, device=meta)
                    labels = torch.empty(batch, dtype=torch.int64, device=meta)
                    rows = torch.empty(batch, dtype=acc, device=meta)
                    config = triton_config.forward_config(batch, classes, dim, dtype, gpu)
                    triton_fwd.launch_forward_partials(e_hat, weight, w_inv_norm, labels, LOGITS, config)
                    _assert_within_cuda_limits(forward.grids[-1], f"forward B={batch} C={classes}")
                    for deterministic in (False, True):
                        config = triton_config.backward_config(batch, classes, dim, dtype, gpu, deterministic)
                        triton_bwd.launch_backward(
                            e_hat, weight, w_inv_norm, labels, LOGITS, rows, rows, config, deterministic
                        )
                        where = f"backward B={batch} C={classes} deterministic={deterministic}"
                        _assert_within_cuda_limits(backward.grids[-1], where)
                        plan = triton_bwd.plan_backward(batch, classes, dim, config, deterministic)
                        # The scratch is bounded by the programs that fill the device and its share of
                        # L2 (at least one batch tile a program), not by C; the deterministic path's dê
                        # buffers by the size of dW (or one (B, D) buffer).
                        assert plan.scratch_elements <= multiprocessors * batch * config.block_c, where
                        assert plan.scratch_elements * dtype.itemsize <= max(
                            triton_config.SCRATCH_L2_SHARE * 50 * 2**20,
                            plan.splits.count * config.block_b * config.block_c * dtype.itemsize,
                        ), where
                        assert plan.d_e_hat_elements <= max(classes, batch) * dim, where


def test_explicit_configs_are_clipped_to_the_grid_limit(monkeypatch):
    """However many splits a caller asks for, the grids stay within the limits: the forward at
    65,536 rows in tiles of 16 (4,096 batch tiles) and one-tile splits of 50 million classes."""
    forward = triton_fwd.plan_forward(65_536, 50_000_000, triton_config.ForwardConfig(16, 16, 16, splits=10**9))
    _assert_within_cuda_limits(forward.grid, "forward")
    assert forward.splits.count * forward.batch_tiles <= MAX_GRID_X
    backward = triton_bwd.plan_backward(
        65_536, 50_000_000, 512, triton_config.BackwardConfig(16, 16, 16, 16, splits=10**9), deterministic=False
    )
    _assert_within_cuda_limits(backward.grid, "backward")
    assert backward.splits.count == backward.splits.tiles == 3_125_000
