"""Finite differences in float64 through the public op: the hand-written backward is the derivative."""

import pytest
import torch

from crfiqa_kernels import Margin, margin_ccs_loss
from crfiqa_kernels.backends import chunked

from .oracle import backends_on


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of three classes, so that the chunked backend's loop over tiles runs more than once."""
    monkeypatch.setattr(chunked, "tile_ranges", lambda c, b: ((s, min(s + 3, c)) for s in range(0, c, 3)))


def _inputs(seed: int):
    """Five float64 embeddings, seven class centers (both requiring grad) and labels with one ignored row."""
    gen = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(7, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    return embeddings, weight, torch.tensor([0, 3, -1, 6, 2])


@pytest.mark.parametrize("backend", ["reference", *backends_on("cpu")])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck(backend, reduction, small_tiles):
    embeddings, weight, labels = _inputs(0)
    margin = Margin(s=4.0, m1=1.2, m2=0.3, m3=0.1)

    def loss(e, w):
        return margin_ccs_loss(e, w, labels, margin, reduction=reduction, backend=backend).loss

    assert torch.autograd.gradcheck(loss, (embeddings, weight))


def test_straight_through_drops_the_margin_slope():
    """With ``straight_through`` the target logit's derivative is that of the plain cosine."""
    gen = torch.Generator().manual_seed(1)
    embeddings = torch.randn(4, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(9, 6, dtype=torch.float64, generator=gen)
    labels = torch.tensor([1, 2, 3, 4])
    margin = Margin.arcface(s=2.0, m=0.5)
    out = margin_ccs_loss(embeddings, weight, labels, margin, margin_grad="straight_through", backend="chunked")
    (grad,) = torch.autograd.grad(out.loss, embeddings)

    e = embeddings.detach().requires_grad_()
    cos = torch.nn.functional.normalize(e, dim=1) @ torch.nn.functional.normalize(weight, dim=1).T
    target = cos.gather(1, labels[:, None])
    logits = cos.scatter(1, labels[:, None], target + (margin.phi(target) - target).detach()) * margin.s
    (expected,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, labels), e)
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("backend", ["reference", *backends_on("cpu")])
def test_gradcheck_per_row_margins(backend, small_tiles):
    """(B,) m2 and m3 that require grad: finite differences in E, W, m2 and m3 together."""
    embeddings, weight, labels = _inputs(2)
    m2 = torch.tensor([0.3, -0.2, 0.5, 0.0, 1.0], dtype=torch.float64, requires_grad=True)
    m3 = torch.tensor([0.1, 0.0, -0.05, 0.2, 0.3], dtype=torch.float64, requires_grad=True)

    def loss(e, w, a, b):
        margin = Margin(s=4.0, m1=1.0, m2=a, m3=b)
        return margin_ccs_loss(e, w, labels, margin, backend=backend).loss

    assert torch.autograd.gradcheck(loss, (embeddings, weight, m2, m3))


@pytest.mark.parametrize("backend", ["reference", *backends_on("cpu")])
def test_gradcheck_interclass_filter(backend, small_tiles):
    embeddings, weight, labels = _inputs(3)

    def loss(e, w):
        return margin_ccs_loss(e, w, labels, Margin(s=4.0), interclass_filter=0.2, backend=backend).loss

    assert torch.autograd.gradcheck(loss, (embeddings, weight))
