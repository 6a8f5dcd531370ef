"""Non-finite inputs propagate to NaN outputs (never a silently finite CCS), or raise on request."""

import pytest
import torch

from crfiqa_kernels import class_stats, margin_ccs_loss

from .oracle import backends_on


@pytest.mark.parametrize("backend", backends_on("cpu"))
def test_nan_embedding_poisons_only_its_row(backend):
    embeddings, weight = torch.randn(5, 8), torch.randn(20, 8)
    labels = torch.tensor([1, 2, 3, 4, 5])
    embeddings[2, 3] = float("nan")
    out = margin_ccs_loss(embeddings, weight, labels, reduction="none", backend=backend)
    for value in (out.loss, out.ccs, out.nnccs):
        assert torch.isnan(value[2])
        assert torch.isfinite(value[[0, 1, 3, 4]]).all()


@pytest.mark.parametrize("backend", backends_on("cpu"))
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_center_poisons_every_row(backend, bad):
    embeddings, weight = torch.randn(5, 8), torch.randn(20, 8)
    weight[7, 0] = bad
    out = margin_ccs_loss(embeddings, weight, torch.tensor([1, 2, 3, 4, 5]), reduction="none", backend=backend)
    assert torch.isnan(out.loss).all() and torch.isnan(out.nnccs).all()


@pytest.mark.parametrize("name", ["embeddings", "weight"])
def test_check_finite_raises_before_computing(name):
    tensors = {"embeddings": torch.randn(5, 8), "weight": torch.randn(20, 8)}
    tensors[name][1, 1] = float("inf")
    labels = torch.tensor([1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match=f"{name} contains NaN or Inf"):
        margin_ccs_loss(tensors["embeddings"], tensors["weight"], labels, backend="chunked", check_finite=True)
    with pytest.raises(ValueError, match=f"{name} contains NaN or Inf"):
        class_stats(tensors["embeddings"], tensors["weight"], labels, check_finite=True)
