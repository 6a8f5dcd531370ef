"""Every kernel backend against the float64 oracle: loss, CCS, NNCCS, nn_index, dE and dW."""

import pytest
import torch

from crfiqa_kernels import Margin
from crfiqa_kernels.backends import chunked

from .oracle import DTYPES, assert_matches_oracle, backends_on, make_problem

CPU_BACKENDS = backends_on("cpu")
GPU_BACKENDS = backends_on("cuda") if torch.cuda.is_available() else ["chunked", "triton", "cuda"]
# (B, C, D): B = 1, C = 2, and sizes that are multiples of no block size.
SHAPES = [(1, 2, 3), (7, 130, 33), (33, 1000, 96)]
MARGINS = {
    "arcface": Margin.arcface(s=64.0, m=0.5),
    "cosface": Margin.cosface(s=30.0, m=0.35),
    "combined": Margin(s=32.0, m1=1.1, m2=0.3, m3=0.1),
}
CHUNK = 13  # classes per tile in these tests: labels below sit on tile borders


@pytest.fixture(autouse=True)
def small_tiles(monkeypatch):
    """Tiles of 13 classes, so that every shape spans several tiles with a ragged last one."""
    monkeypatch.setattr(chunked, "tile_ranges", lambda c, b: ((s, min(s + CHUNK, c)) for s in range(0, c, CHUNK)))


def _ignored(batch):
    return () if batch < 3 else (1, batch - 1)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_oracle(backend, dtype, shape):
    batch, classes, dim = shape
    problem = make_problem(batch, classes, dim, dtype=dtype, seed=hash(shape) % 1000, ignored=_ignored(batch))
    assert_matches_oracle(problem, backend, MARGINS["arcface"], "exact")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("margin_grad", ["exact", "straight_through"])
@pytest.mark.parametrize("margin", MARGINS, ids=str)
def test_margins_and_gradient_modes(backend, margin, margin_grad):
    problem = make_problem(9, 130, 33, dtype=torch.float32, seed=7, ignored=(4,))
    assert_matches_oracle(problem, backend, MARGINS[margin], margin_grad)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_labels_on_tile_borders(backend):
    classes = 130
    labels = [0, CHUNK - 1, CHUNK, 2 * CHUNK - 1, 2 * CHUNK, 64, 127, 128, classes - 1, 5, 16]
    problem = make_problem(len(labels), classes, 33, dtype=torch.float32, seed=3, labels=labels, ignored=(9,))
    assert_matches_oracle(problem, backend, MARGINS["arcface"], "exact")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_row_ignored(backend, dtype):
    """No labelled row: zero loss, zero gradients, NaN CCS, NNCCS still the best class."""
    problem = make_problem(3, 40, 17, dtype=dtype, seed=11, ignored=(0, 1, 2))
    out = assert_matches_oracle(problem, backend, MARGINS["arcface"], "exact")
    assert bool((out["loss"] == 0).all())
    assert bool(torch.isnan(out["ccs"]).all())
    assert not out["grad_weight"].any() and not out["grad_embeddings"].any()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_single_row_batch(backend):
    problem = make_problem(1, 257, 64, dtype=torch.float32, seed=5, labels=[256])
    assert_matches_oracle(problem, backend, MARGINS["arcface"], "exact")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_float64_inputs_give_the_oracle(backend):
    problem = make_problem(7, 130, 33, dtype=torch.float64, seed=13, ignored=(2,))
    out = assert_matches_oracle(problem, backend, MARGINS["combined"], "exact")
    assert out["loss"].dtype == torch.float64 and out["grad_weight"].dtype == torch.float64


# (backend, device): the CPU backends, and every backend on a GPU where one is present.
ON_EVERY_DEVICE = [pytest.param(name, "cpu", id=name) for name in CPU_BACKENDS] + [
    pytest.param(name, "cuda", id=f"{name}-cuda", marks=pytest.mark.gpu) for name in GPU_BACKENDS
]


@pytest.mark.parametrize("backend,device", ON_EVERY_DEVICE)
def test_float16_embeddings_with_float32_centers_of_any_norm(backend, device):
    """Autocast's case, float16 embeddings and float32 master weights, with centers of norm 1e-6 …
    1e6: ŵ is formed before the rounding to float16, so W·ê does not overflow it."""
    problem = make_problem(9, 130, 33, dtype=torch.float16, seed=17, ignored=(3,), device=device)
    norms = 10.0 ** torch.arange(-6, 7, dtype=torch.float64, device=device).repeat(10)[:130]
    problem.weight = (problem.weight.double() * norms.unsqueeze(1) * 20).float()
    out = assert_matches_oracle(problem, backend, MARGINS["arcface"], "exact")
    assert torch.isfinite(out["grad_embeddings"]).all() and torch.isfinite(out["grad_weight"]).all()


@pytest.mark.parametrize("backend,device", ON_EVERY_DEVICE)
def test_float16_gradient_through_small_centers_does_not_overflow(backend, device):
    """Embeddings almost opposite their own small float16 center (c ≈ −1, where ArcFace's φ' is
    large): ∂ℓ/∂c_ij / ‖W_j‖ exceeds float16, though dE and dW (tangential parts) do not. ŵ is
    formed before the rounding, so the product ∂ℓ/∂c · ŵ stays in range."""
    problem = make_problem(6, 40, 33, dtype=torch.float16, seed=19, labels=[0, 1, 2, 3, 4, 5], device=device)
    gen = torch.Generator().manual_seed(19)
    weight = torch.randn(40, 33, generator=gen, dtype=torch.float64) * 1e-2
    embeddings = -weight[:6] / weight[:6].norm(dim=1, keepdim=True) + 0.04 * torch.randn(6, 33, generator=gen)
    problem.weight, problem.embeddings = weight.to(device, torch.float16), embeddings.to(device, torch.float16)
    problem.row_grad *= 30.0  # as from reduction="sum" over a larger batch
    out = assert_matches_oracle(problem, backend, MARGINS["arcface"], "exact")
    assert torch.isfinite(out["grad_embeddings"]).all() and torch.isfinite(out["grad_weight"]).all()


@pytest.mark.gpu
@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES + [(65, 10_007, 512)], ids=lambda s: "x".join(map(str, s)))
def test_matches_oracle_on_gpu(backend, dtype, shape):
    batch, classes, dim = shape
    problem = make_problem(
        batch, classes, dim, dtype=dtype, seed=hash(shape) % 1000, ignored=_ignored(batch), device="cuda"
    )
    assert_matches_oracle(problem, backend, MARGINS["arcface"], "exact")


def _per_row_margin(batch, seed):
    gen = torch.Generator().manual_seed(seed)
    m2 = (0.6 * torch.rand(batch, generator=gen, dtype=torch.float64) - 0.1).requires_grad_()
    m3 = (0.2 * torch.randn(batch, generator=gen, dtype=torch.float64)).requires_grad_()
    return Margin(s=32.0, m1=1.0, m2=m2, m3=m3)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_per_row_margins_reach_their_gradient(backend, dtype, shape):
    """(B,) m2 and m3 of any sign: loss, statistics, dE, dW and the margins' gradients."""
    batch, classes, dim = shape
    problem = make_problem(batch, classes, dim, dtype=dtype, seed=11, ignored=_ignored(batch))
    impl = assert_matches_oracle(problem, backend, _per_row_margin(batch, seed=batch))
    assert "grad_margin_0" in impl and "grad_margin_1" in impl


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("threshold", [-0.05, 0.1, 1.0])
def test_interclass_filter(backend, dtype, threshold):
    """PartialFC's filter: negatives above t count as cosine 0 and get no gradient (t = 1: none)."""
    problem = make_problem(9, 130, 33, dtype=dtype, seed=5, ignored=(4,))
    problem.embeddings[0] = problem.weight[3].to(problem.embeddings.dtype) * 100  # a negative above any t
    assert_matches_oracle(problem, backend, MARGINS["cosface"], interclass_filter=threshold)
