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


def _run(dtype, compiler=None):
    """One training step of a seeded Linear(16, 32) backbone and a 100-class head on 9 rows (one
    label ignored) in ``dtype``: (loss, ccs, nnccs, nn_index), the gradients, and the head."""
    torch.manual_seed(0)
    backbone = torch.nn.Linear(16, 32)
    head = MarginCCSHead(100, 32, backend="chunked")
    images, labels = torch.randn(9, 16), torch.randint(-1, 100, (9,))
    backbone, head = backbone.to(dtype), head.to(dtype)
    torch._dynamo.reset()
    compile_kwargs = None if compiler is None else {"backend": compiler}
    outputs = _training_step(backbone, head, compile_kwargs)(images.to(dtype), labels)
    return outputs, [p.grad for p in (*backbone.parameters(), head.weight)], head


def rounding_bound(head, batch=9, in_features=16) -> float:
    """A first-order bound on the float32 step's error against float64, relative to the largest
    magnitude of each output (at least 1: the cosines' errors are absolute). A dot product of length
    K rounds within K·u (Higham's γ_K, u = 2⁻²⁴), in whatever order a compiler fuses and sums it:
    the backbone's K = 16 and the embedding's norm (D) give the cosines an absolute error of D·u,
    which the scale s turns into s·D·u in every logit and so in every softmax probability; the
    log-sum-exp over C classes and the gradients' sums over B rows add C·u and B·u."""
    classes, dim = head.weight.shape
    roundings = in_features + dim + head.margin.s * dim + classes + batch
    return roundings * torch.finfo(torch.float32).eps / 2


@pytest.mark.parametrize(
    "compiler", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)]
)  # inductor: a C++ build
def test_fullgraph_compile_matches_eager(compiler):
    """Compiled and eager float32 steps are each within the rounding bound of the float64 step (a
    compiler may fuse and reorder sums, which this bound covers); nn_index is the same."""
    exact, exact_grads, head = _run(torch.float64)
    eager, eager_grads, _ = _run(torch.float32)
    compiled, compiled_grads, _ = _run(torch.float32, compiler)
    bound = rounding_bound(head)

    assert torch.equal(compiled[3], eager[3])
    for outputs, grads in ((compiled, compiled_grads), (eager, eager_grads)):
        for got, expected in zip((*outputs[:3], *grads), (*exact[:3], *exact_grads), strict=True):
            scale = max(expected.nan_to_num().abs().max().item(), 1.0)
            torch.testing.assert_close(got.double(), expected, rtol=0, atol=bound * scale, equal_nan=True)


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
