import pytest
import torch

from crfiqa_kernels import class_stats, margin_ccs_loss
from crfiqa_kernels.reference import cosine_matrix

from .oracle import backends_on


def _inputs():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(13, 24, generator=gen), torch.randn(300, 24, generator=gen)


@pytest.mark.parametrize("backend", backends_on("cpu"))
def test_with_labels_equals_the_loss_statistics(backend):
    embeddings, weight = _inputs()
    labels = torch.randint(0, 300, (13,))
    labels[4] = -1
    stats = class_stats(embeddings, weight, labels, backend=backend)
    out = margin_ccs_loss(embeddings, weight, labels, backend=backend)
    torch.testing.assert_close(stats.ccs, out.ccs, equal_nan=True)
    torch.testing.assert_close(stats.nnccs, out.nnccs)
    assert torch.equal(stats.nn_index, out.nn_index)
    top = cosine_matrix(embeddings.double(), weight.double()).argmax(dim=1)
    assert torch.equal(stats.top_class, top)


@pytest.mark.parametrize("backend", backends_on("cpu"))
def test_without_labels_gives_best_and_runner_up(backend):
    embeddings, weight = _inputs()
    stats = class_stats(embeddings, weight, backend=backend)
    best = cosine_matrix(embeddings.double(), weight.double()).topk(2, dim=1)
    torch.testing.assert_close(stats.ccs.double(), best.values[:, 0], rtol=0, atol=1e-6)
    torch.testing.assert_close(stats.nnccs.double(), best.values[:, 1], rtol=0, atol=1e-6)
    assert torch.equal(stats.top_class, best.indices[:, 0])
    assert torch.equal(stats.nn_index, best.indices[:, 1])


def test_no_autograd_graph():
    embeddings, weight = _inputs()
    stats = class_stats(embeddings.requires_grad_(), weight.requires_grad_())
    assert not stats.ccs.requires_grad and not stats.nnccs.requires_grad
