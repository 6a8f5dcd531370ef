"""Fresh random problems on every run: shapes, dtypes, margins, ignored rows and tile sizes drawn by
hypothesis, each backend against the float64 oracle. A failure prints the drawn example."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crfiqa_kernels import Margin
from crfiqa_kernels.backends import chunked
from crfiqa_kernels.backends.triton import config as triton_config
from crfiqa_kernels.backends.triton.config import BackwardConfig, ForwardConfig

from .oracle import DTYPES, assert_matches_oracle, backends_on, make_problem

# Examples per run: interpreted Triton is slow on a CPU; on a GPU every backend is fast.
CPU_EXAMPLES = {"chunked": 80, "triton": 20}
GPU_EXAMPLES = 200
MARGINS = st.sampled_from(
    [
        Margin.arcface(s=64.0, m=0.5),
        Margin.cosface(s=30.0, m=0.35),
        Margin(s=32.0, m1=1.1, m2=0.3, m3=0.1),
    ]
)


@st.composite
def problems(draw, device="cpu"):
    dtype = draw(st.sampled_from(DTYPES))
    batch = draw(st.integers(1, 40))
    classes = draw(st.integers(2, 300))
    # Near |c| = 1 the margin's gradient is ill-conditioned (φ' grows like 1/sin θ, its slope like
    # 1/sin³ θ): a cosine's last-bit rounding then moves dE by more than any tolerance, for every
    # implementation alike, and the rule's same-dtype error is one coin toss. Random directions in
    # D ≥ 16 dimensions keep |c| well below 1; the fixed-shape tests cover smaller D.
    dim = draw(st.integers(16, 80))
    ignored = draw(st.one_of(st.just(set(range(batch))), st.sets(st.integers(0, batch - 1), max_size=batch)))
    labels = draw(st.lists(st.integers(0, classes - 1), min_size=batch, max_size=batch))
    seed = draw(st.integers(0, 2**31 - 1))
    return make_problem(
        batch, classes, dim, dtype=dtype, seed=seed, labels=labels, ignored=sorted(ignored), device=device
    )


def triton_configs(tile: int) -> tuple[ForwardConfig, BackwardConfig]:
    """Small Triton blocks for a drawn tile width: class tiles of 16, 32 or 64, 1–4 splits."""
    block_c = max(16, 1 << (tile.bit_length() - 1))
    splits = 1 + tile % 4
    return (
        ForwardConfig(block_b=16, block_c=block_c, block_d=32, splits=splits),
        BackwardConfig(block_b=16, block_c=block_c, block_d=16, block_dw=32, splits=splits),
    )


# (backend, device): the CPU backends, and every backend on a GPU where one is present.
ON_EVERY_DEVICE = [pytest.param(name, "cpu", id=name) for name in backends_on("cpu")] + [
    pytest.param(name, "cuda", id=f"{name}-cuda", marks=pytest.mark.gpu) for name in ("chunked", "triton", "cuda")
]


@pytest.mark.slow  # many problems a backend; tests/crfiqa_kernels/test_backends.py is the fast tier's
@pytest.mark.parametrize("backend,device", ON_EVERY_DEVICE)
def test_random_problems_match_the_oracle(backend, device, monkeypatch):
    @settings(
        max_examples=CPU_EXAMPLES[backend] if device == "cpu" else GPU_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        problem=problems(device),
        margin=MARGINS,
        margin_grad=st.sampled_from(["exact", "straight_through"]),
        tile=st.integers(1, 64),
    )
    def check(problem, margin, margin_grad, tile):
        # Any tile width, so that tiles are ragged and labels fall on their borders; the Triton
        # kernels take the power-of-two class tile nearest below it (at least 16, tl.dot's
        # minimum) and 1–4 class splits.
        monkeypatch.setattr(chunked, "tile_ranges", lambda c, b: ((s, min(s + tile, c)) for s in range(0, c, tile)))
        forward, backward = triton_configs(tile)
        monkeypatch.setattr(triton_config, "forward_config", lambda *args, **kwargs: forward)
        monkeypatch.setattr(triton_config, "backward_config", lambda *args, **kwargs: backward)
        assert_matches_oracle(problem, backend, margin, margin_grad)

    check()


def test_problem_strategy_covers_the_edges():
    """The strategy reaches B = 1, C = 2, all-ignored batches and half precision."""
    seen = {"B=1": False, "C=2": False, "all ignored": False, "half": False}

    @settings(max_examples=300, deadline=None)
    @given(problems())
    def collect(problem):
        seen["B=1"] |= problem.labels.numel() == 1
        seen["C=2"] |= problem.weight.shape[0] == 2
        seen["all ignored"] |= bool((problem.labels == -1).all())
        seen["half"] |= problem.embeddings.dtype != torch.float32

    collect()
    assert all(seen.values()), seen
