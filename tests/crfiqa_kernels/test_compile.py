"""torch.compile(fullgraph=True) traces a training step through the custom ops; autocast picks the
compute dtype."""

import pytest
import torch

from crfiqa_kernels import MarginCCSHead, margin_ccs_loss

from .oracle import backends_on


def _training_step(backbone, head, compile_kwargs=None):
    """Forward traced as one graph (the backward graph is compiled by AOTAutograd with it)."""

    def forward(images, labels):
        out = head(backbone(images), labels)
        return out.loss, out.ccs, out.nnccs, out.nn_index

    if compile_kwargs is not None:
        forward = torch.compile(forward, fullgraph=True, **compile_kwargs)

    def step(images, labels):
        loss, *stats = forward(images, labels)
        loss.backward()
        return (loss.detach(), *stats)

    return step


@pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
def test_fullgraph_compile_matches_eager(compiler):
    torch.manual_seed(0)
    backbone = torch.nn.Linear(16, 32)
    head = MarginCCSHead(100, 32, backend="chunked")
    images, labels = torch.randn(9, 16), torch.randint(-1, 100, (9,))

    eager = _training_step(backbone, head)(images, labels)
    eager_grads = [p.grad.clone() for p in (*backbone.parameters(), head.weight)]
    for p in (*backbone.parameters(), head.weight):
        p.grad = None

    torch._dynamo.reset()
    compiled = _training_step(backbone, head, {"backend": compiler})(images, labels)
    compiled_grads = [p.grad for p in (*backbone.parameters(), head.weight)]

    torch.testing.assert_close(compiled[0], eager[0])
    torch.testing.assert_close(compiled[1], eager[1], equal_nan=True)
    torch.testing.assert_close(compiled[2], eager[2])
    assert torch.equal(compiled[3], eager[3])
    for got, expected in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend", backends_on("cpu"))
def test_autocast_computes_in_the_autocast_dtype(backend):
    """Under bf16 autocast, fp32 embeddings are multiplied in bf16 against fp32 master weights,
    exactly as if the caller had cast them, and the gradients keep the inputs' dtypes."""
    torch.manual_seed(1)
    embeddings = torch.randn(6, 40, requires_grad=True)
    weight = torch.randn(50, 40, requires_grad=True)
    labels = torch.tensor([0, 10, 20, 30, 40, -1])

    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = margin_ccs_loss(embeddings, weight, labels, backend=backend)
    auto.loss.backward()
    assert embeddings.grad.dtype == torch.float32 and weight.grad.dtype == torch.float32

    cast = margin_ccs_loss(embeddings.detach().bfloat16(), weight.detach(), labels, backend=backend)
    full = margin_ccs_loss(embeddings.detach(), weight.detach(), labels, backend=backend)
    torch.testing.assert_close(auto.ccs, cast.ccs, equal_nan=True, rtol=1e-2, atol=1e-2)
    assert not torch.allclose(auto.ccs[:5], full.ccs[:5], rtol=0, atol=1e-6), "autocast had no effect"
