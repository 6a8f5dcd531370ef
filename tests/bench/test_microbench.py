"""pytest-benchmark microbenchmarks of the CPU path, outside the test suite's verdict.

    python -m pytest tests/bench/test_microbench.py --benchmark-only

The chunked op, forward and forward + backward, at small shapes, beside the authors' formulation
at the same shapes for scale. Inputs rotate between rounds (3 sets of embeddings and labels).
"""

from __future__ import annotations

import itertools

import pytest
import torch

pytest.importorskip("pytest_benchmark")  # optional: these are timings, not tests

from bench.impls import Setting, get_implementation
from bench.problems import get_dtype, make_problems
from bench.runner import MARGIN
from bench.shapes import Shape

CPU = torch.device("cpu")
SMALL_SHAPES = (
    Shape("B128-C4096-D128", 128, 4_096, 128, "small"),
    Shape("B256-C10572-D512", 256, 10_572, 512, "CASIA-WebFace classes, half batch"),
)


@pytest.mark.parametrize("mode", ("fwd", "fwd_bwd"))
@pytest.mark.parametrize("name", ("chunked", "authors_eager"))
@pytest.mark.parametrize("shape", SMALL_SHAPES, ids=lambda shape: shape.name)
def test_cpu_step(benchmark, shape, name, mode):
    dtype = get_dtype("fp32")
    problems = make_problems(shape, dtype, CPU, count=3, seed=0)
    step = get_implementation(name).prepare(Setting(CPU, dtype, mode, MARGIN, problems))
    rotation = itertools.cycle(problems)
    benchmark.group = f"{shape.name} {mode}"
    outputs = benchmark(lambda: step(next(rotation)))
    assert torch.isfinite(outputs[0]).item()
