"""The ``cuda`` backend's numerics, on a GPU (every test is gpu-marked).

One tolerance rule, DESIGN §7 through oracle.py: ``|cuda − oracle| ≤ |same-dtype PyTorch − oracle|
+ tol·scale`` with the float64 oracle on the very same (already rounded) inputs. Covered: the public
op in fp32 / fp16 / bf16 with tails, ignored rows and B = 1, both margins and margin gradients, the
kernels with every negative transform; the
kernels through the contract — forward partials per class split, the backward on the atomic and the
deterministic path, several class groups per block and partial groups, the scratch in shared and in global memory, mixed
W dtypes; exact ties, labels outside the shard, strided and misaligned operands, non-finite inputs.
tests/gpu/run_memcheck.sh runs these under compute-sanitizer.
"""

from __future__ import annotations

import math

import pytest
import torch

from crfiqa_kernels import Margin, margin_ccs_loss
from crfiqa_kernels.backends import chunked, cuda
from crfiqa_kernels.backends.contract import LogitParams
from crfiqa_kernels.combine import combine_partials

from ..flags import torch_flags
from .oracle import DTYPES, TOLERANCE, assert_matches_oracle, make_problem

pytestmark = pytest.mark.gpu

ARCFACE = Margin.arcface(s=64.0, m=0.5)
COMBINED = Margin(s=32.0, m1=1.1, m2=0.3, m3=0.1)
# What the kernels see of a margin: the non-target logits s·ν(c), with each transform.
LOGITS = LogitParams(s=64.0)


def _transforms(batch):
    thresholds = torch.linspace(-0.1, 0.2, batch, device="cuda")
    return {
        "none": LOGITS,
        "filter": LogitParams(30.0, 0.0, "filter", thresholds),
        "curricular": LogitParams(30.0, 1e-3, "curricular", thresholds, t=0.3),
    }


def _error(value: torch.Tensor, oracle: torch.Tensor) -> float:
    nan = torch.isnan(oracle)
    assert torch.equal(torch.isnan(value), nan), "NaN pattern differs from the oracle"
    diff = (value.double() - oracle.double())[~nan].abs()
    return float(diff.max()) if diff.numel() else 0.0


def _assert_rule(name: str, value, same_dtype, oracle, dtype) -> None:
    """DESIGN §7's bound, as oracle.assert_matches_oracle applies it to the public op."""
    scale = max(1.0, float(oracle.double().nan_to_num().abs().max()))
    bound = _error(same_dtype, oracle) + TOLERANCE[dtype] * scale
    error = _error(value, oracle)
    assert error <= bound, f"{name} {dtype}: error {error:.3g} > bound {bound:.3g}"


# ------------------------------------------------------------------------------------------------
# The public op against the oracle.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    ("batch", "classes", "dim", "ignored"),
    [
        (1, 2, 1, ()),
        (1, 130, 64, ()),
        (3, 129, 33, (1,)),
        (37, 531, 300, (0, 5, 36)),
        (70, 4_000, 96, (69,)),
    ],
    ids=str,
)
@pytest.mark.parametrize("margin", [ARCFACE, COMBINED], ids=["arcface", "combined"])
@pytest.mark.parametrize("margin_grad", ["exact", "straight_through"])
def test_op_matches_the_oracle(dtype, batch, classes, dim, ignored, margin, margin_grad):
    problem = make_problem(batch, classes, dim, dtype=dtype, seed=batch + classes + dim, ignored=ignored, device="cuda")
    assert_matches_oracle(problem, "cuda", margin, margin_grad)


# ------------------------------------------------------------------------------------------------
# The kernels through the contract, against the chunked backend in float64 and in the same dtype.
# ------------------------------------------------------------------------------------------------


def _operands(batch, classes, dim, dtype, weight_dtype=None, *, seed, ignored=0.2):
    gen = torch.Generator().manual_seed(seed)
    e_hat = torch.nn.functional.normalize(torch.randn(batch, dim, generator=gen, dtype=torch.float64), dim=1)
    weight = 0.01 * torch.randn(classes, dim, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, classes, (batch,), generator=gen)
    labels[torch.rand(batch, generator=gen) < ignored] = -1
    e_hat, weight = e_hat.to(dtype).cuda(), weight.to(weight_dtype or dtype).cuda()
    w_inv_norm = (1.0 / weight.double().norm(dim=1).clamp(min=1e-12)).float()
    return e_hat, weight, w_inv_norm, labels.cuda()


def _oracle_backward(e_hat, weight, w_inv_norm, labels, logits, lse, row_grad):
    """chunked in float64 on the operands as the kernels see them (W rounded to ê's dtype)."""
    w = weight.to(e_hat.dtype).double()
    return chunked.backward(e_hat.double(), w, w_inv_norm.double(), labels, logits, lse.double(), row_grad.double())


def _check_backward(e_hat, weight, w_inv_norm, labels, logits, **kwargs):
    stats = combine_partials(
        chunked.forward_partials(e_hat.double(), weight.to(e_hat.dtype).double(), w_inv_norm.double(), labels, logits)
    )
    lse = stats.lse.float()
    row_grad = torch.where(labels >= 0, torch.rand(labels.shape[0], device="cuda") + 0.5, 0.0)
    got = cuda.backward(e_hat, weight, w_inv_norm, labels, logits, lse, row_grad, **kwargs)
    same = chunked.backward(e_hat, weight.to(e_hat.dtype), w_inv_norm, labels, logits, lse, row_grad)
    oracle = _oracle_backward(e_hat, weight, w_inv_norm, labels, logits, lse, row_grad)
    assert got[0].dtype == torch.float32 and got[0].shape == e_hat.shape
    assert got[1].dtype == weight.dtype and got[1].shape == weight.shape
    for name, value, reference, expected in zip(("d_e_hat", "d_weight"), got, same, oracle, strict=True):
        _assert_rule(name, value, reference, expected, e_hat.dtype)
    return got


def _assert_same_kernel_results(operands, reference_operands, lse, row_grad, **forward_options):
    """The kernels give bit-identical results on ``operands`` and on ``reference_operands`` (each
    ``(e_hat, weight, w_inv_norm, labels)``): the forward partials (NaN read as 0) and the backward
    on the deterministic path."""
    for a, b in zip(
        cuda.forward_partials(*operands, LOGITS, **forward_options),
        cuda.forward_partials(*reference_operands, LOGITS, **forward_options),
        strict=True,
    ):
        assert torch.equal(a.nan_to_num(), b.nan_to_num())
    with torch_flags(deterministic=True):  # the backward's fixed-order path
        for a, b in zip(
            cuda.backward(*operands, LOGITS, lse, row_grad),
            cuda.backward(*reference_operands, LOGITS, lse, row_grad),
            strict=True,
        ):
            assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(1, 2, 1), (3, 129, 33), (70, 1000, 96), (65, 3001, 300)], ids=str)
def test_forward_partials_per_split(dtype, shape):
    batch, classes, dim = shape
    e_hat, weight, w_inv_norm, labels = _operands(batch, classes, dim, dtype, seed=sum(shape))
    oracle = combine_partials(
        chunked.forward_partials(e_hat.double(), weight.double(), w_inv_norm.double(), labels, LOGITS)
    )
    same = combine_partials(chunked.forward_partials(e_hat, weight, w_inv_norm, labels, LOGITS))
    tiles = math.ceil(classes / cuda._C.FORWARD_BLOCK_CLASSES)
    for splits in sorted({1, cuda.whole_splits(3, tiles), tiles}):
        partials = cuda.forward_partials(e_hat, weight, w_inv_norm, labels, LOGITS, splits=splits)
        assert partials.row_max.shape == (splits, batch) and partials.nn_index.dtype == torch.int64
        got = combine_partials(partials)
        for name in ("lse", "target_cos", "nn_cos"):
            _assert_rule(name, getattr(got, name), getattr(same, name), getattr(oracle, name), dtype)
        # The index attains the nearest negative (exact index equality only holds without near-ties).
        cos = (e_hat.double() @ weight.double().T * w_inv_norm.double()).clamp(-1, 1)
        picked = cos.gather(1, got.nn_index.unsqueeze(1)).squeeze(1)
        _assert_rule("nn_index's cosine", picked, same.nn_cos, oracle.nn_cos, dtype)


@pytest.mark.parametrize("negative", ["none", "filter", "curricular"])
@pytest.mark.parametrize(
    ("dtype", "weight_dtype"),
    [
        (torch.float32, torch.float32),
        (torch.float16, torch.float16),
        (torch.bfloat16, torch.bfloat16),
        (torch.bfloat16, torch.float32),
        (torch.float16, torch.float32),
        (torch.float16, torch.bfloat16),
    ],
    ids=str,
)
def test_backward_matches_the_oracle(dtype, weight_dtype, negative):
    operands = _operands(37, 531, 300, dtype, weight_dtype, seed=9)
    for blocks in (0, 1, 2):  # the device's plan; one block walking every class group; two blocks
        _check_backward(*operands, _transforms(37)[negative], blocks=blocks)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_backward_scratch_in_shared_and_in_global_memory(dtype):
    """A small batch keeps a group's ∂ℓ/∂cᵀ in shared memory where the device has room (sm_90: every
    dtype); a large one uses the blocks' rows of a global scratch."""
    properties = cuda._device_properties(torch.device("cuda"))
    seen = set()
    for batch in (37, 1_100):
        plan = cuda.backward_plan(dtype, batch, 700, 72, deterministic=False, **properties)
        seen.add(plan["scratch_in_shared"])
        _check_backward(*_operands(batch, 700, 72, dtype, seed=batch), LOGITS)
    assert False in seen
    if torch.cuda.get_device_capability() >= (9, 0):
        assert True in seen


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_deterministic_path_is_reproducible_and_agrees_with_atomics(dtype):
    operands = _operands(130, 4000, 256, dtype, seed=5)
    with torch_flags(deterministic=True):  # the backward's fixed-order path
        first = _check_backward(*operands, LOGITS, blocks=7)
        lse, row_grad = torch.full((130,), 5.0, device="cuda"), torch.rand(130, device="cuda")
        again = [cuda.backward(*operands, LOGITS, lse, row_grad, blocks=7) for _ in range(2)]
    assert first[0].shape == (130, 256)
    atomic = cuda.backward(*operands, LOGITS, lse, row_grad, blocks=7)
    assert torch.equal(again[0][0], again[1][0]) and torch.equal(again[0][1], again[1][1])
    assert torch.equal(again[0][1], atomic[1])  # dW never uses atomics
    # Same products, another order of the fp32 sum over class tiles.
    scale = max(1.0, float(atomic[0].abs().max()))
    assert float((again[0][0] - atomic[0]).abs().max()) <= TOLERANCE[torch.float32] * scale


def test_forward_ties_take_the_lowest_index():
    """Duplicated class centers tie exactly (same place in their class tiles, so the same lane and
    register compute them): the lowest index wins, within a split and across splits."""
    block = cuda._C.FORWARD_BLOCK_CLASSES
    twins = [5, 5 + 2 * block, 5 + 5 * block]
    _, weight, _, _ = _operands(9, 6 * block - 40, 64, torch.float32, seed=4)
    weight[twins] = weight[twins[-1]].clone()
    w_inv_norm = (1.0 / weight.double().norm(dim=1)).float()
    noise = 0.001 * torch.randn(9, 64, device="cuda", dtype=torch.float64)
    e_hat = torch.nn.functional.normalize(weight[twins[-1]].double() + noise, dim=1).float()
    labels = torch.full((9,), -1, dtype=torch.int64, device="cuda")
    for splits in (1, 3):
        stats = combine_partials(cuda.forward_partials(e_hat, weight, w_inv_norm, labels, LOGITS, splits=splits))
        assert bool((stats.nn_index == twins[0]).all()), stats.nn_index


def test_labels_outside_the_shard_count_as_absent():
    """Any label value is safe: outside [0, C) it reads as "no local target" (−1)."""
    e_hat, weight, w_inv_norm, _ = _operands(6, 300, 40, torch.bfloat16, seed=2)
    odd = torch.tensor([-1, -7, 300, 10**12, -(10**12), 5], device="cuda")
    absent = torch.where((odd >= 0) & (odd < 300), odd, -1)
    lse, row_grad = torch.full((6,), 3.0, device="cuda"), torch.rand(6, device="cuda")
    _assert_same_kernel_results(
        (e_hat, weight, w_inv_norm, odd), (e_hat, weight, w_inv_norm, absent), lse, row_grad, splits=2
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_strided_and_misaligned_operands(dtype):
    """Slices of wider buffers starting one element in (padded row stride, no 16-byte alignment):
    the element-wise load path gives exactly what the vector path gives on contiguous copies."""
    e_hat, weight, w_inv_norm, labels = _operands(11, 301, 40, dtype, seed=8)

    def misaligned(matrix):
        padded = torch.zeros(matrix.shape[0], 48, dtype=dtype, device="cuda")
        padded[:, 1:41] = matrix
        return padded[:, 1:41]

    e_strided, w_strided = misaligned(e_hat), misaligned(weight)
    assert w_strided.stride(0) == 48 and w_strided.data_ptr() % 16 != 0 and weight.data_ptr() % 16 == 0
    lse, row_grad = torch.full((11,), 4.0, device="cuda"), torch.rand(11, device="cuda")
    _assert_same_kernel_results(
        (e_strided, w_strided, w_inv_norm, labels), (e_hat, weight, w_inv_norm, labels), lse, row_grad
    )


def test_float64_is_served_by_the_chunked_backend():
    e_hat, weight, w_inv_norm, labels = _operands(5, 40, 16, torch.float64, seed=1)
    got = cuda.forward_partials(e_hat, weight, w_inv_norm, labels, LOGITS)
    want = chunked.forward_partials(e_hat, weight, w_inv_norm, labels, LOGITS)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and torch.equal(a.nan_to_num(), b.nan_to_num())


def test_pointers_outside_device_memory_are_rejected():
    """Device tensors everywhere but one host tensor: a ValueError naming it, no launch."""
    from crfiqa_kernels import _C

    e_hat, weight, w_inv_norm, labels = _operands(3, 7, 5, torch.float32, seed=3)
    outputs = torch.empty(4, 3, device="cuda")
    host = torch.zeros(3, dtype=torch.int64)

    def vector(t):
        code = _C.DTYPE_INT64 if t.dtype == torch.int64 else _C.DTYPE_FLOAT32
        return _C.Vector(ptr=t.data_ptr(), dtype=code, length=t.numel())

    def matrix(t):
        return _C.Matrix(
            ptr=t.data_ptr(),
            dtype=_C.DTYPE_FLOAT32,
            rows=t.shape[0],
            cols=t.shape[1],
            row_stride=t.stride(0),
            col_stride=1,
        )

    with pytest.raises(ValueError, match="nn_index: not device memory"):
        _C.forward_partials(
            device=torch.cuda.current_device(),
            stream=torch.cuda.current_stream().cuda_stream,
            policy=_C.POLICY_3XTF32,
            e=matrix(e_hat),
            weight=matrix(weight),
            w_inv_norm=vector(w_inv_norm),
            labels=vector(labels),
            logits=(64.0, 0.0, 0.0),
            negative=0,
            threshold=_C.Vector(ptr=0, dtype=_C.DTYPE_FLOAT32, length=0),
            splits=1,
            row_max=vector(outputs[0]),
            row_sumexp=vector(outputs[1]),
            target_cos=vector(outputs[2]),
            nn_cos=vector(outputs[3]),
            nn_index=vector(host),
        )


def test_available_on_the_gpus_it_was_built_for():
    capability = torch.cuda.get_device_capability()
    properties = cuda._C.device_properties(torch.cuda.current_device())
    assert properties["multiprocessors"] == torch.cuda.get_device_properties(0).multi_processor_count
    assert properties["max_shared_bytes"] >= 48 * 1024
    expected = cuda.runs_on(capability, cuda._C.ARCHITECTURES) and cuda.shared_memory_suffices(
        properties["max_shared_bytes"]
    )
    assert cuda.available("cuda") == expected


def test_non_finite_inputs_propagate():
    """As the NaN policy of the op says: a NaN embedding poisons its row only, an infinite class
    center every row; never a finite CCS or NNCCS computed from them."""
    embeddings, weight = torch.randn(5, 40, device="cuda"), torch.randn(300, 40, device="cuda")
    labels = torch.tensor([1, 2, 3, 4, 299], device="cuda")
    embeddings[2, 3] = float("nan")
    out = margin_ccs_loss(embeddings, weight, labels, reduction="none", backend="cuda")
    for value in (out.loss, out.ccs, out.nnccs):
        assert torch.isnan(value[2]) and torch.isfinite(value[[0, 1, 3, 4]]).all()
    embeddings[2, 3] = 0.0
    weight[170, 0] = float("inf")
    out = margin_ccs_loss(embeddings, weight, labels, reduction="none", backend="cuda")
    assert torch.isnan(out.loss).all() and torch.isnan(out.nnccs).all()
