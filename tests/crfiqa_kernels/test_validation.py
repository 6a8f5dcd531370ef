"""Bad input gets a ValueError/TypeError naming the argument, before any kernel runs."""

import pytest
import torch

from crfiqa_kernels import Margin, MarginCCSHead, class_stats, margin_ccs_loss
from crfiqa_kernels.backends import chunked
from crfiqa_kernels.reference import cosine_matrix


@pytest.fixture(autouse=True)
def no_kernel_runs(monkeypatch):
    """Any call reaching the backend fails the test: validation must come first."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a kernel ran on invalid input")

    monkeypatch.setattr(chunked, "forward_partials", forbidden)
    monkeypatch.setattr(chunked, "backward", forbidden)


E = torch.randn(4, 8)
W = torch.randn(10, 8)
Y = torch.tensor([0, 3, -1, 9])


@pytest.mark.parametrize(
    "embeddings, weight, labels, error, name",
    [
        (E[0], W, Y, ValueError, "embeddings"),
        (E, W[0], Y, ValueError, "weight"),
        (E.unsqueeze(0), W, Y, ValueError, "embeddings"),
        (E, torch.randn(10, 7), Y, ValueError, "embedding size"),
        (E, W, Y.float(), TypeError, "labels"),
        (E, W, Y.bool(), TypeError, "labels"),
        (E, W, [0, 3, -1, 9], TypeError, "labels"),
        (E, W, None, TypeError, "labels"),
        (E, W, torch.tensor([0, 3, -2, 9]), ValueError, "labels"),
        (E, W, torch.tensor([0, 3, 10, 9]), ValueError, "labels"),
        (E, W, Y[:3], ValueError, "labels"),
        (E, W, Y.view(2, 2), ValueError, "labels"),
        (E, W.to("meta"), Y, ValueError, "weight"),
        (E, W, Y.to("meta"), ValueError, "labels"),
        (E, W[:1], torch.zeros(4, dtype=torch.long), ValueError, "classes"),
        (E[:0], W, Y[:0], ValueError, "empty"),
        (E.long(), W, Y, TypeError, "embeddings"),
        (E.to(torch.complex64), W, Y, TypeError, "embeddings"),
        (E, W.int(), Y, TypeError, "weight"),
        (E.numpy(), W, Y, TypeError, "embeddings"),
    ],
)
def test_bad_tensors(embeddings, weight, labels, error, name):
    with pytest.raises(error, match=name):
        margin_ccs_loss(embeddings, weight, labels, backend="chunked")


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"reduction": "avg"}, ValueError, "reduction"),
        ({"margin_grad": "approx"}, ValueError, "margin_grad"),
        ({"backend": "fast"}, ValueError, "backend"),
        ({"margin": 0.5}, TypeError, "margin"),
    ],
)
def test_bad_options(kwargs, error, name):
    kwargs = {"backend": "chunked", **kwargs}
    with pytest.raises(error, match=name):
        margin_ccs_loss(E, W, Y, **kwargs)


def test_backend_unavailable_on_the_device():
    with pytest.raises(ValueError, match="backend 'cuda' is not available"):
        margin_ccs_loss(E, W, Y, backend="cuda")


def test_class_stats_validates_too():
    with pytest.raises(ValueError, match="labels"):
        class_stats(E, W, torch.tensor([0, 1, 2, 10]), backend="chunked")
    with pytest.raises(ValueError, match="embedding size"):
        class_stats(E, torch.randn(10, 3), backend="chunked")


def test_label_range_check_can_be_switched_off(monkeypatch):
    """``validate=False`` skips the one host synchronization (the labels are then the caller's
    responsibility) and the kernels still stay in bounds: a label ≥ C matches no class, as a target
    in another shard would, so its row gets NaN CCS and loss, never a finite wrong value; a label
    below −1 is an ignored row; the other rows are untouched."""
    with pytest.raises(AssertionError, match="a kernel ran"):
        margin_ccs_loss(E, W, torch.tensor([0, 3, 10, 9]), backend="chunked", validate=False)
    monkeypatch.undo()  # from here on the kernels the autouse fixture forbids run
    with pytest.raises(ValueError, match="labels"):
        margin_ccs_loss(E, W, torch.tensor([0, 10, -2, 9]), backend="chunked")

    weight = W.clone().requires_grad_()
    out = margin_ccs_loss(E, weight, torch.tensor([0, 10, -2, 9]), backend="chunked", validate=False, reduction="none")
    good = margin_ccs_loss(E, W, torch.tensor([0, 3, -1, 9]), backend="chunked", reduction="none")
    for field in ("loss", "ccs", "nnccs", "nn_index"):
        torch.testing.assert_close(getattr(out, field)[[0, 3]], getattr(good, field)[[0, 3]])
    cos = cosine_matrix(E, W)
    assert torch.isnan(out.loss[1]) and torch.isnan(out.ccs[1])
    assert out.loss[2] == 0 and torch.isnan(out.ccs[2])
    # Neither row has a target among the classes: its NNCCS is the max over all of them.
    torch.testing.assert_close(out.nnccs[1:3], cos[1:3].max(dim=1).values)
    assert out.nn_index[1:3].tolist() == cos[1:3].argmax(dim=1).tolist()
    out.loss[[0, 3]].sum().backward()
    assert torch.isfinite(weight.grad).all()


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"num_classes": 1}, ValueError, "num_classes"),
        ({"num_classes": 3.0}, TypeError, "num_classes"),
        ({"embedding_size": 0}, ValueError, "embedding_size"),
        ({"margin_grad": "none"}, ValueError, "margin_grad"),
        ({"backend": "cudnn"}, ValueError, "backend"),
        ({"margin": Margin}, TypeError, "margin"),
    ],
)
def test_bad_head_arguments(kwargs, error, name):
    kwargs = {"num_classes": 10, "embedding_size": 8, **kwargs}
    with pytest.raises(error, match=name):
        MarginCCSHead(**kwargs)


@pytest.mark.parametrize(
    "margin, error, name",
    [
        (lambda: Margin(m2=torch.zeros(3)), ValueError, "Margin.m2"),
        (lambda: Margin(m3=torch.zeros(4, dtype=torch.int64)), TypeError, "Margin.m3"),
        (lambda: Margin(m2=torch.zeros(4, device="meta")), ValueError, "Margin.m2"),
        (lambda: Margin(m3=torch.tensor([0.0, float("nan"), 0.0, 0.0])), ValueError, "Margin.m3"),
    ],
)
def test_bad_per_row_margins_name_the_argument(margin, error, name):
    with pytest.raises(error, match=name):
        margin_ccs_loss(E, W, torch.tensor([0, 3, 1, 9]), margin(), backend="chunked")


@pytest.mark.parametrize(
    "value, error", [(-1.0, ValueError), (1.5, ValueError), (float("nan"), ValueError), ("0.2", TypeError)]
)
def test_bad_interclass_filter_names_the_argument(value, error):
    with pytest.raises(error, match="interclass_filter"):
        margin_ccs_loss(E, W, torch.tensor([0, 3, 1, 9]), interclass_filter=value, backend="chunked")
    with pytest.raises(error, match="interclass_filter"):
        MarginCCSHead(10, 8, interclass_filter=value)
