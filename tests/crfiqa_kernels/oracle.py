"""Comparison against the float64 oracle, shared by every backend test (DESIGN §7).

For each output, the rule is ``max|impl − oracle| ≤ max|same-dtype reference − oracle| + tol·scale``
where the oracle is the reference backend on float64 copies of the very same (already rounded)
inputs, and ``scale = max(1, max|oracle|)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from crfiqa_kernels import MarginCCSOutput, MarginFamily, margin_ccs_loss
from crfiqa_kernels.backends import resolve

HALF_DTYPES = (torch.float16, torch.bfloat16)
DTYPES = (torch.float32, *HALF_DTYPES)
# Slack on top of the same-dtype reference's own error: backends round differently (raw W times
# 1/‖W‖ instead of a normalized copy, another summation order), not worse.
TOLERANCE = {torch.float64: 1e-9, torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.5e-2}


@dataclass
class Problem:
    embeddings: torch.Tensor
    weight: torch.Tensor
    labels: torch.Tensor
    row_grad: torch.Tensor


def make_problem(batch, classes, dim, *, dtype, seed, labels=None, ignored=(), device="cpu") -> Problem:
    """Random embeddings and centers in ``dtype``, random labels (or the given ones), some rows
    ignored, and a random upstream gradient per row."""
    gen = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(batch, dim, generator=gen).to(dtype)
    weight = (0.01 * torch.randn(classes, dim, generator=gen)).to(dtype)
    if labels is None:
        labels = torch.randint(0, classes, (batch,), generator=gen)
    labels = torch.as_tensor(labels, dtype=torch.int64).clone()
    labels[list(ignored)] = -1
    row_grad = torch.rand(batch, generator=gen) + 0.5
    return Problem(embeddings.to(device), weight.to(device), labels.to(device), row_grad.to(device))


def run_op(
    problem: Problem, backend: str, margin: MarginFamily, margin_grad: str, *, to=None, interclass_filter=None
) -> dict:
    """Outputs and gradients of the op for ``reduction="none"`` and the problem's row gradient,
    in the problem's dtypes or both in ``to``; ``margin_params`` adds the gradients of the margin's
    per-row tensors that require grad (as float64)."""
    embeddings = problem.embeddings.detach().to(to or problem.embeddings.dtype).requires_grad_()
    weight = problem.weight.detach().to(to or problem.weight.dtype).requires_grad_()
    params = [p for p in (getattr(margin, "m2", None), getattr(margin, "m3", None)) if _learnable(p)]
    for param in params:
        param.grad = None
    out = margin_ccs_loss(
        embeddings,
        weight,
        problem.labels,
        margin,
        reduction="none",
        margin_grad=margin_grad,
        interclass_filter=interclass_filter,
        backend=backend,
    )
    (out.loss * problem.row_grad.to(out.loss.dtype)).sum().backward()
    results = compared_results(out, embeddings.grad, weight.grad)
    for index, param in enumerate(params):
        results[f"grad_margin_{index}"] = param.grad.double()
    return results


def _learnable(value) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad


def compared_results(out: MarginCCSOutput, grad_embeddings, grad_weight) -> dict:
    """What the tests compare after a backward, by name: the op's outputs and both gradients."""
    return {
        "loss": out.loss.detach(),
        "ccs": out.ccs,
        "nnccs": out.nnccs,
        "nn_index": out.nn_index,
        "grad_embeddings": grad_embeddings,
        "grad_weight": grad_weight,
    }


def _max_error(value: torch.Tensor, oracle: torch.Tensor) -> float:
    # NaN where the oracle has NaN (CCS of ignored rows) must be NaN in the value too.
    nan = torch.isnan(oracle)
    assert torch.equal(torch.isnan(value), nan), "NaN pattern differs from the oracle"
    diff = (value.double() - oracle)[~nan].abs()
    return float(diff.max()) if diff.numel() else 0.0


def assert_within_bound(name: str, impl: torch.Tensor, same_dtype: torch.Tensor, oracle: torch.Tensor, dtype) -> None:
    """The rule of this module for one output: ``max|impl − oracle| ≤ max|same_dtype − oracle| +
    TOLERANCE[dtype] · max(1, max|oracle|)``, NaN exactly where the oracle has NaN."""
    oracle = oracle.double()
    scale = max(1.0, float(oracle.nan_to_num().abs().max()))
    bound = _max_error(same_dtype, oracle) + TOLERANCE[dtype] * scale
    error = _max_error(impl, oracle)
    assert error <= bound, f"{name} ({dtype}): error {error:.3g} > bound {bound:.3g}"


def assert_matches_oracle(
    problem: Problem, backend: str, margin: MarginFamily, margin_grad: str = "exact", *, interclass_filter=None
) -> dict:
    """Checks every output and gradient of ``backend`` (the margin's per-row parameters' included)
    against the float64 oracle; returns them with the largest error of each under ``"errors"``."""
    dtype = problem.embeddings.dtype
    impl = run_op(problem, backend, margin, margin_grad, interclass_filter=interclass_filter)
    same_dtype = run_op(problem, "reference", margin, margin_grad, interclass_filter=interclass_filter)
    oracle = run_op(problem, "reference", margin, margin_grad, to=torch.float64, interclass_filter=interclass_filter)

    keys = ["loss", "ccs", "nnccs", "grad_embeddings", "grad_weight", *(k for k in impl if k.startswith("grad_m"))]
    impl["errors"] = {key: _max_error(impl[key], oracle[key].double()) for key in keys}
    for key in keys:
        assert impl[key].shape == oracle[key].shape, key
        assert_within_bound(f"{backend} {key}", impl[key], same_dtype[key], oracle[key], dtype)
    assert_nn_index_attains(impl["nn_index"], impl["nnccs"], problem, dtype)
    return impl


def assert_nn_index_attains(nn_index, nnccs, problem: Problem, dtype) -> None:
    """``nn_index`` is another class than the label whose float64 cosine equals NNCCS up to the
    dtype's tolerance (exact index equality is only meaningful without near-ties)."""
    from crfiqa_kernels.reference import cosine_matrix

    cos = cosine_matrix(problem.embeddings.double(), problem.weight.double())
    assert bool((nn_index != problem.labels).all())
    assert bool(((nn_index >= 0) & (nn_index < problem.weight.shape[0])).all())
    picked = cos.gather(1, nn_index.unsqueeze(1)).squeeze(1)
    best = cos.masked_fill(
        torch.nn.functional.one_hot(problem.labels.clamp(min=0), cos.shape[1]).bool()
        & (problem.labels >= 0).unsqueeze(1),
        float("-inf"),
    ).amax(dim=1)
    slack = 4 * TOLERANCE[dtype] + (1e-3 if dtype in HALF_DTYPES else 0.0)
    assert float((best - picked).max()) <= slack
    assert float((nnccs.double() - best).abs().max()) <= slack


def backends_on(device) -> list[str]:
    """The kernel backends runnable on ``device`` (the oracle is not one of them)."""
    names = []
    for name in ("chunked", "triton", "cuda"):
        try:
            if resolve(name, torch.device(device)) == name:
                names.append(name)
        except ValueError:
            pass
    return names
