"""The ``triton`` backend against the float64 oracle, through the public op and through the
kernel contract directly (per class split, the backward with any ``lse`` / ``row_grad``).

On the CPU these run the kernels under Triton's interpreter (tests/conftest.py sets
``TRITON_INTERPRET=1``); the tests marked ``gpu`` run them compiled, at the benchmark's shapes.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from crfiqa_kernels import Margin, margin_ccs_loss
from crfiqa_kernels.backends import chunked, class_splits, resolve
from crfiqa_kernels.backends import triton as triton_backend
from crfiqa_kernels.backends.contract import LogitParams
from crfiqa_kernels.backends.triton import backward_kernel as triton_bwd
from crfiqa_kernels.backends.triton import config as triton_config
from crfiqa_kernels.backends.triton.config import BackwardConfig, ForwardConfig
from crfiqa_kernels.combine import combine_partials
from crfiqa_kernels.reference import margin_ccs_loss_reference

from ..flags import torch_flags
from .oracle import (
    DTYPES,
    HALF_DTYPES,
    TOLERANCE,
    assert_matches_oracle,
    assert_within_bound,
    make_problem,
)

ARCFACE = Margin.arcface(s=64.0, m=0.5)
COMBINED = Margin(s=32.0, m1=1.1, m2=0.3, m3=0.1)
# What the kernels see of a margin: the non-target logits s·ν(c).
LOGITS = LogitParams(s=64.0)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Small tiles and several class splits: every shape below spans many tiles and a ragged last one.
SMALL_FORWARD = ForwardConfig(block_b=16, block_c=16, block_d=32, splits=5)
SMALL_BACKWARD = BackwardConfig(block_b=16, block_c=16, block_d=16, block_dw=32, splits=4)


def _ignored(batch):
    return () if batch < 3 else (1, batch - 1)


@pytest.fixture
def small_tiles(monkeypatch):
    """The public op picks the small configurations above."""
    monkeypatch.setattr(triton_config, "forward_config", lambda *args, **kwargs: SMALL_FORWARD)
    monkeypatch.setattr(triton_config, "backward_config", lambda *args, **kwargs: SMALL_BACKWARD)


@pytest.fixture
def deterministic():
    """Deterministic algorithms on for the test, the previous setting restored afterwards."""
    with torch_flags(deterministic=True):
        yield


# ------------------------------------------------------------------------------------------------
# Through the public op: loss, CCS, NNCCS, nn_index, dE, dW against the float64 oracle.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [64, 96])
@pytest.mark.parametrize("classes", [2, 130, 1000])
@pytest.mark.parametrize("batch", [1, 7, 33])
def test_public_op_matches_oracle(batch, classes, dim):
    seed = batch * 7919 + classes * 31 + dim
    problem = make_problem(batch, classes, dim, dtype=torch.float32, seed=seed, ignored=_ignored(batch), device=DEVICE)
    assert_matches_oracle(problem, "triton", ARCFACE)


@pytest.mark.parametrize("margin_grad", ["exact", "straight_through"])
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(7, 130, 96), (33, 1000, 64)], ids=lambda s: "x".join(map(str, s)))
def test_half_precision_and_margin_grad_modes(shape, dtype, margin_grad):
    batch, classes, dim = shape
    problem = make_problem(batch, classes, dim, dtype=dtype, seed=classes + dim, ignored=_ignored(batch), device=DEVICE)
    assert_matches_oracle(problem, "triton", ARCFACE, margin_grad)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_labels_on_tile_and_split_borders(small_tiles, dtype):
    """16-class tiles in splits of two tiles: labels on the first/last class of tiles and splits."""
    classes = 130
    labels = [0, 15, 16, 31, 32, 47, 48, 63, 64, 127, 128, classes - 1, 5, 100]
    problem = make_problem(len(labels), classes, 96, dtype=dtype, seed=17, labels=labels, ignored=(12,), device=DEVICE)
    assert_matches_oracle(problem, "triton", ARCFACE)


@pytest.mark.parametrize("margin_grad", ["exact", "straight_through"])
def test_multiplicative_margin_with_small_tiles(small_tiles, margin_grad):
    problem = make_problem(19, 130, 40, dtype=torch.float32, seed=23, ignored=(3,), device=DEVICE)
    assert_matches_oracle(problem, "triton", COMBINED, margin_grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_embedding_size_512(dtype):
    problem = make_problem(7, 130, 512, dtype=dtype, seed=29, ignored=(2,), device=DEVICE)
    assert_matches_oracle(problem, "triton", ARCFACE)


def test_autocast_bfloat16_keeps_float32_weights():
    """Under autocast the tile products run in bf16 while W and dW stay float32."""
    device_type = torch.device(DEVICE).type
    problem = make_problem(21, 300, 64, dtype=torch.float32, seed=31, ignored=(4,), device=DEVICE)
    results = {}
    for name, to in (("impl", None), ("same_dtype", torch.bfloat16), ("oracle", torch.float64)):
        embeddings = problem.embeddings.clone().requires_grad_()
        weight = problem.weight.clone().requires_grad_()
        if name == "impl":
            with torch.autocast(device_type, dtype=torch.bfloat16):
                out = margin_ccs_loss(embeddings, weight, problem.labels, ARCFACE, reduction="none", backend="triton")
        else:
            out = margin_ccs_loss_reference(
                embeddings.to(to),
                weight.to(torch.float64) if to == torch.float64 else weight,
                problem.labels,
                ARCFACE,
                reduction="none",
            )
        (out.loss * problem.row_grad.to(out.loss.dtype)).sum().backward()
        results[name] = {
            "loss": out.loss.detach(),
            "ccs": out.ccs,
            "nnccs": out.nnccs,
            "dE": embeddings.grad,
            "dW": weight.grad,
        }
    assert results["impl"]["dW"].dtype == torch.float32
    for key in ("loss", "ccs", "nnccs"):
        assert_within_bound(
            key, results["impl"][key], results["same_dtype"][key], results["oracle"][key], torch.bfloat16
        )
    for key in ("dE", "dW"):
        assert_within_bound(
            key, results["impl"][key], results["same_dtype"][key], results["oracle"][key], torch.bfloat16
        )


def test_ties_go_to_the_lowest_class_index(small_tiles):
    """Identical centers within a tile, across tiles of a split and across splits: NNCCS picks the
    lowest index other than the label. Entries ±1 (norm 8) make every product exact, so the twins
    tie exactly in any summation order."""
    gen = torch.Generator().manual_seed(37)
    patterns = torch.randint(0, 2, (2, 64), generator=gen).float() * 2 - 1
    weight = torch.randn(130, 64, generator=gen)
    # 16-class tiles, two tiles per split: 5 | 21, 26 are tiles 0 | 1 of split 0; 53 is in split 1;
    # 101 | 117 are tiles 6 | 7 of split 3.
    weight[[5, 21, 26]] = patterns[0]
    weight[[53, 101, 117]] = patterns[1]
    embeddings = torch.randn(5, 64, generator=gen)
    embeddings[:2] = patterns[0]
    embeddings[2:4] = patterns[1]
    labels = torch.tensor([3, 5, 7, 53, 9])
    expected = margin_ccs_loss_reference(embeddings.double(), weight.double(), labels, ARCFACE)
    for dtype in DTYPES:
        out = margin_ccs_loss(
            embeddings.to(DEVICE, dtype), weight.to(DEVICE, dtype), labels.to(DEVICE), ARCFACE, backend="triton"
        )
        assert out.nn_index[:4].tolist() == [5, 21, 53, 101], dtype
        assert out.nnccs[:4].tolist() == [1.0] * 4, dtype
        assert out.nn_index[4].item() == expected.nn_index[4].item(), dtype


def test_no_batch_by_class_allocation_on_cpu():
    """The launchers' own allocations stay far below one B × C float buffer (interpreter run)."""
    if DEVICE != "cpu":
        pytest.skip("the CUDA variant is test_no_batch_by_class_allocation_on_gpu")
    gen = torch.Generator().manual_seed(41)
    embeddings = torch.randn(64, 8, generator=gen, requires_grad=True)
    weight = torch.randn(3000, 8, generator=gen, requires_grad=True)
    labels = torch.randint(0, 3000, (64,), generator=gen)
    with torch.profiler.profile(profile_memory=True) as prof:
        margin_ccs_loss(embeddings, weight, labels, backend="triton").loss.backward()
    largest = max(event.cpu_memory_usage for event in prof.events())
    assert 0 < largest < 64 * 3000 * 4 / 4


# ------------------------------------------------------------------------------------------------
# The kernel contract directly: per-split partials and the backward with arbitrary lse / row_grad.
# ------------------------------------------------------------------------------------------------


def _contract_inputs(batch, classes, dim, dtype, seed, labels=None):
    """ê in ``dtype`` (as ops.py hands it to a backend), raw float32 W, its inverse norms, labels
    with ignored rows (−1 also stands for "target on another shard")."""
    problem = make_problem(
        batch, classes, dim, dtype=torch.float32, seed=seed, labels=labels, ignored=_ignored(batch), device=DEVICE
    )
    e_hat = F.normalize(problem.embeddings, dim=1).to(dtype)
    w_inv_norm = 1.0 / problem.weight.norm(dim=1).clamp(min=1e-12)
    return e_hat, problem.weight, w_inv_norm, problem.labels, problem.row_grad


def _as_float64(*tensors):
    return tuple(t.double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in tensors)


def _local_labels(labels, start, stop):
    return torch.where((labels >= start) & (labels < stop), labels - start, -1)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_forward_partials_per_split(dtype):
    """Each split's partials equal the oracle's statistics over that split's classes alone."""
    config = ForwardConfig(block_b=16, block_c=32, block_d=32, splits=4)
    batch, classes = 33, 250
    e_hat, weight, w_inv_norm, labels, _ = _contract_inputs(batch, classes, 80, dtype, seed=43)
    labels[:4] = torch.tensor([0, 63, 64, classes - 1])
    partials = triton_backend.forward_partials(e_hat, weight, w_inv_norm, labels, LOGITS, config=config)
    bounds = class_splits.class_ranges(classes, config.block_c, config.splits)
    assert partials.row_max.shape == (len(bounds), batch) == (4, batch)
    assert partials.nn_index.dtype == torch.int64

    for split, (start, stop) in enumerate(bounds):
        local = _local_labels(labels, start, stop)
        operands = (e_hat, weight[start:stop], w_inv_norm[start:stop])
        oracle = combine_partials(chunked.forward_partials(*_as_float64(*operands), local, LOGITS))
        same = combine_partials(chunked.forward_partials(*operands, local, LOGITS))
        impl_lse = partials.row_max[split] + torch.log(partials.row_sumexp[split])
        assert_within_bound("lse", impl_lse, same.lse, oracle.lse, dtype)
        for field in ("target_cos", "nn_cos"):
            impl = getattr(partials, field)[split]
            assert_within_bound(field, impl, getattr(same, field), getattr(oracle, field), dtype)
        index = partials.nn_index[split] - start  # partials index the shard's classes, not the split's
        assert bool(((index >= 0) & (index < stop - start) & (index != local)).all())
        if dtype == torch.float32:
            assert torch.equal(index, oracle.nn_index)
        else:  # half precision: the chosen class attains the split's max within tolerance
            w_hat = weight[start:stop].double() * w_inv_norm[start:stop, None].double()
            cos = e_hat.double() @ w_hat.T
            picked = cos.gather(1, index[:, None]).squeeze(1)
            assert float((oracle.nn_cos - picked).max()) <= 4 * TOLERANCE[dtype] + 1e-3


def _backward_case(dtype, seed, logits=LOGITS, config=SMALL_BACKWARD):
    """dê, dW of the backend and of the chunked backend in the same dtype and in float64, for the
    oracle's lse and a row gradient that is non-zero on rows without a local target too."""
    batch, classes, dim = 21, 150, 72
    e_hat, weight, w_inv_norm, labels, row_grad = _contract_inputs(batch, classes, dim, dtype, seed)
    labels[2] = -1  # target on another shard: no target term, yet a gradient through the softmax
    row_grad[1] = 0.0  # an ignored row
    if logits.threshold is not None:
        logits = logits._replace(threshold=logits.threshold[:batch])
    oracle_stats = combine_partials(chunked.forward_partials(*_as_float64(e_hat, weight, w_inv_norm), labels, logits))
    lse = oracle_stats.lse.float()
    impl = triton_backend.backward(e_hat, weight, w_inv_norm, labels, logits, lse, row_grad, config=config)
    same = chunked.backward(e_hat, weight, w_inv_norm, labels, logits, lse, row_grad)
    oracle = chunked.backward(*_as_float64(e_hat, weight, w_inv_norm), labels, logits, *_as_float64(lse, row_grad))
    return impl, same, oracle, weight


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_backward_matches_oracle(dtype):
    impl, same, oracle, weight = _backward_case(dtype, seed=47)
    assert impl[0].dtype == torch.float32 and impl[1].dtype == weight.dtype
    for name, index in (("d_e_hat", 0), ("d_weight", 1)):
        assert_within_bound(name, impl[index], same[index], oracle[index], dtype)


NEGATIVE_TRANSFORMS = {
    "filter": LogitParams(30.0, 0.0, "filter", torch.linspace(-0.1, 0.2, 21)),
    "curricular": LogitParams(30.0, 1e-3, "curricular", torch.linspace(-0.1, 0.2, 21), t=0.3),
}


@pytest.mark.parametrize("negative", NEGATIVE_TRANSFORMS)
def test_backward_negative_transforms(negative):
    """The filter's and CurricularFace's ν (run-time thresholds per row, a clamp bound) against
    the chunked backend in float64."""
    logits = NEGATIVE_TRANSFORMS[negative]
    logits = logits._replace(threshold=logits.threshold.to(DEVICE))
    impl, same, oracle, _ = _backward_case(torch.float32, seed=53, logits=logits)
    for name, index in (("d_e_hat", 0), ("d_weight", 1)):
        assert_within_bound(name, impl[index], same[index], oracle[index], torch.float32)


def test_backward_one_program_per_class_tile_and_wide_columns():
    """The default split of the atomic path (one class tile per program) and a dW column chunk
    wider than D."""
    config = BackwardConfig(block_b=32, block_c=16, block_d=32, block_dw=128, splits=10_000)
    impl, same, oracle, _ = _backward_case(torch.bfloat16, seed=59, config=config)
    for name, index in (("d_e_hat", 0), ("d_weight", 1)):
        assert_within_bound(name, impl[index], same[index], oracle[index], torch.bfloat16)


@pytest.mark.slow  # the fast tier's row passes: test_triton_configs.py
@pytest.mark.parametrize("path", ["atomic", "deterministic"])
@pytest.mark.parametrize("weight_dtype", [torch.float32, torch.bfloat16], ids=str)
def test_backward_in_row_passes(path, weight_dtype, deterministic):
    """A batch whose scratch would outgrow L2 is processed in passes of fewer rows (here 21 rows
    in passes of 16 + 5), each adding to dW: the result meets the oracle's bound on both paths
    and for a bfloat16 W (summed in fp32, rounded once)."""
    torch.use_deterministic_algorithms(path == "deterministic")
    config = BackwardConfig(block_b=16, block_c=16, block_d=16, block_dw=32, splits=4, rows_per_pass=16)
    assert triton_bwd.plan_backward(21, 150, 72, config, path == "deterministic").passes == ((0, 16), (16, 21))
    e_hat, weight, w_inv_norm, labels, row_grad = _contract_inputs(21, 150, 72, torch.bfloat16, seed=71)
    weight = weight.to(weight_dtype)
    labels[2], row_grad[1] = -1, 0.0
    operands = (e_hat, weight, w_inv_norm)
    lse = combine_partials(chunked.forward_partials(*_as_float64(*operands), labels, LOGITS)).lse.float()
    impl = triton_backend.backward(*operands, labels, LOGITS, lse, row_grad, config=config)
    same = chunked.backward(*operands, labels, LOGITS, lse, row_grad)
    oracle = chunked.backward(*_as_float64(*operands), labels, LOGITS, *_as_float64(lse, row_grad))
    assert impl[1].dtype == weight_dtype
    for name, index in (("d_e_hat", 0), ("d_weight", 1)):
        assert_within_bound(name, impl[index], same[index], oracle[index], torch.bfloat16)


def test_strided_operands():
    """Strides are passed to the kernels: column-major ê and every other column of a wider W."""
    e_hat, weight, w_inv_norm, labels, row_grad = _contract_inputs(13, 90, 40, torch.float32, seed=97)
    e_strided = e_hat.t().contiguous().t()
    w_strided = torch.zeros(90, 80, device=DEVICE)[:, ::2]
    w_strided.copy_(weight)
    lse = combine_partials(chunked.forward_partials(e_hat, weight, w_inv_norm, labels, LOGITS)).lse
    dense = (e_hat, weight, w_inv_norm, labels, LOGITS)
    strided = (e_strided, w_strided, w_inv_norm, labels, LOGITS)
    for expected, actual in zip(
        triton_backend.forward_partials(*dense), triton_backend.forward_partials(*strided), strict=True
    ):
        torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True)
    expected = triton_backend.backward(*dense, lse, row_grad)
    actual = triton_backend.backward(*strided, lse, row_grad)
    torch.testing.assert_close(actual[0], expected[0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(actual[1], expected[1], rtol=1e-6, atol=1e-7)


def test_bfloat16_weights_give_bfloat16_gradient():
    batch, classes, dim = 9, 70, 40
    e_hat, weight, w_inv_norm, labels, row_grad = _contract_inputs(batch, classes, dim, torch.bfloat16, seed=61)
    weight = weight.bfloat16()
    lse = combine_partials(chunked.forward_partials(e_hat, weight, w_inv_norm, labels, LOGITS)).lse
    impl = triton_backend.backward(e_hat, weight, w_inv_norm, labels, LOGITS, lse, row_grad)
    same = chunked.backward(e_hat, weight, w_inv_norm, labels, LOGITS, lse, row_grad)
    oracle = chunked.backward(*_as_float64(e_hat, weight, w_inv_norm), labels, LOGITS, *_as_float64(lse, row_grad))
    assert impl[1].dtype == torch.bfloat16
    for name, index in (("d_e_hat", 0), ("d_weight", 1)):
        assert_within_bound(name, impl[index], same[index], oracle[index], torch.bfloat16)


def test_deterministic_path_is_bitwise_reproducible(deterministic, monkeypatch):
    """With deterministic algorithms on, the backward takes the split-buffer path (asked for by
    the config), gives bitwise equal results on every run and agrees with the atomic path."""
    asked = []
    choose = triton_config.backward_config

    def recording(*args, **kwargs):
        config = choose(*args, **kwargs)
        asked.append((args[-1], config))
        return BackwardConfig(16, 32, 32, 64, splits=3)

    monkeypatch.setattr(triton_config, "backward_config", recording)
    e_hat, weight, w_inv_norm, labels, row_grad = _contract_inputs(21, 150, 72, torch.bfloat16, seed=67)
    lse = combine_partials(chunked.forward_partials(e_hat, weight, w_inv_norm, labels, LOGITS)).lse
    args = (e_hat, weight, w_inv_norm, labels, LOGITS, lse, row_grad)
    first = triton_backend.backward(*args)
    second = triton_backend.backward(*args)
    assert [deterministic_flag for deterministic_flag, _ in asked] == [True, True]
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])

    torch.use_deterministic_algorithms(False)
    atomic = triton_backend.backward(*args)
    assert asked[-1][0] is False
    torch.testing.assert_close(first[0], atomic[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(first[1], atomic[1], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Configuration, availability and bad input.
# ------------------------------------------------------------------------------------------------


def test_splits_fill_an_h100_at_batch_512(monkeypatch):
    """B = 512 has only 8 batch tiles: the class splits bring the grid to ≥ 132 programs, and no
    split is empty."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(triton_config, "_target_programs", lambda device: 2 * 132)
    for classes in (10_572, 85_742):
        config = triton_config.forward_config(512, classes, 512, torch.bfloat16, torch.device("cuda"))
        batch_tiles = math.ceil(512 / config.block_b)
        class_tiles = math.ceil(classes / config.block_c)
        assert batch_tiles * config.splits >= 132
        splits = class_splits.plan(class_tiles, config.splits)
        assert splits.count == config.splits and (splits.count - 1) * splits.tiles_per_split < class_tiles
    small = triton_config.forward_config(512, 300, 512, torch.bfloat16, torch.device("cuda"))
    assert small.splits == math.ceil(300 / small.block_c)


def test_backward_programs_fill_the_device_and_deterministic_buffers_never_outgrow_dw(monkeypatch):
    """Atomic path: one persistent program per class split, one per SM of an H100 (132; a program
    takes an SM's registers) or one per class tile when there are fewer; deterministic path: the
    (S, B, D) buffers of partial dê stay within dW's size. The scratch stays within its share of
    L2: B = 512 in one pass, B = 4,096 (the Shard shape) in passes of fewer rows."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    l2_bytes = 50 * 2**20
    monkeypatch.setattr(triton_config, "device_resources", lambda device: triton_config.DeviceResources(132, l2_bytes))
    for batch, classes in ((512, 10_572), (512, 85_742), (4096, 257_489), (4096, 2_000), (512, 300)):
        config = triton_config.backward_config(batch, classes, 512, torch.bfloat16, torch.device("cuda"), True)
        assert config.splits * batch <= max(classes, batch)
        atomic = triton_config.backward_config(batch, classes, 512, torch.bfloat16, torch.device("cuda"), False)
        class_tiles = math.ceil(classes / atomic.block_c)
        assert atomic.splits == class_splits.plan(class_tiles, min(class_tiles, 132)).count
        assert atomic.splits <= 132 and (atomic.splits >= 132 / 2 or atomic.splits == class_tiles)
        for chosen in (config, atomic):
            plan = triton_bwd.plan_backward(batch, classes, 512, chosen, chosen is config)
            assert plan.scratch_elements * 2 <= triton_config.SCRATCH_L2_SHARE * l2_bytes
            assert plan.passes[0][0] == 0 and plan.passes[-1][1] == batch
            assert len(plan.passes) == math.ceil(batch / (chosen.rows_per_pass or batch))
            whole_batch_fits = chosen.splits * batch * chosen.block_c * 2 <= triton_config.SCRATCH_L2_SHARE * l2_bytes
            assert (len(plan.passes) == 1) == whole_batch_fits, (batch, classes, chosen)
            assert len(plan.passes) == 1 or (batch, classes) in ((4096, 257_489), (4096, 2_000))


@pytest.mark.parametrize("bad", [dict(block_b=24), dict(block_c=8), dict(splits=0), dict(num_warps=0)])
def test_config_rejects_bad_values(bad):
    values = dict(block_b=16, block_c=16, block_d=16, splits=1) | bad
    with pytest.raises(ValueError):
        ForwardConfig(**values)


def test_availability(monkeypatch):
    assert not triton_backend.available(torch.device("meta"))
    assert triton_backend.available("cuda") == torch.cuda.is_available()
    assert triton_backend.available("cpu") == (not torch.cuda.is_available())  # conftest: interpreter
    if torch.cuda.is_available():
        assert not triton_backend.available(f"cuda:{torch.cuda.device_count()}")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not triton_backend.available("cpu")
    assert resolve("auto", torch.device("cpu")) == "chunked"
    problem = make_problem(3, 10, 16, dtype=torch.float32, seed=71)
    with pytest.raises(ValueError, match="triton"):
        margin_ccs_loss(problem.embeddings, problem.weight, problem.labels, backend="triton")
    e_hat = F.normalize(problem.embeddings, dim=1)
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        triton_backend.forward_partials(e_hat, problem.weight, torch.ones(10), problem.labels, LOGITS)


def _valid_operands():
    e_hat, weight, w_inv_norm, labels, _ = _contract_inputs(5, 20, 16, torch.float32, seed=73)
    return dict(e_hat=e_hat, weight=weight, w_inv_norm=w_inv_norm, labels_local=labels)


@pytest.mark.parametrize(
    "name, bad, error",
    [
        ("e_hat", lambda t: t.int(), TypeError),
        ("weight", lambda t: t[:, :8], ValueError),
        ("w_inv_norm", lambda t: t[:-1], ValueError),
        ("labels_local", lambda t: t.int(), ValueError),
        ("labels_local", lambda t: t[:-1], ValueError),
    ],
)
def test_bad_operands_name_the_argument(name, bad, error):
    operands = _valid_operands()
    operands[name] = bad(operands[name])
    with pytest.raises(error, match=name):
        triton_backend.forward_partials(logits=LOGITS, **operands)


def test_backward_rejects_bad_row_grad_and_threshold():
    operands = _valid_operands()
    lse = torch.zeros(5, device=DEVICE)
    with pytest.raises(ValueError, match="row_grad"):
        triton_backend.backward(*operands.values(), LOGITS, lse, torch.zeros(4, device=DEVICE))
    with pytest.raises(ValueError, match="threshold"):
        triton_backend.backward(*operands.values(), LOGITS._replace(negative="filter"), lse, lse)


# ------------------------------------------------------------------------------------------------
# On a GPU: the benchmark's shapes (DESIGN §6), compiled kernels.
# ------------------------------------------------------------------------------------------------

GPU_SHAPES = {"S": (512, 10_572, 512), "L": (512, 85_742, 512)}
# B ≫ D: here a B × C buffer would dwarf dW (C × D), so the memory check cannot confuse them.
TALL = {"tall": (4096, 85_742, 128)}


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=str)
def test_gpu_matches_oracle(shape, dtype):
    batch, classes, dim = GPU_SHAPES[shape]
    problem = make_problem(batch, classes, dim, dtype=dtype, seed=79, ignored=(0, 100), device="cuda")
    assert_matches_oracle(problem, "triton", ARCFACE)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [*GPU_SHAPES, *TALL], ids=str)
def test_no_batch_by_class_allocation_on_gpu(shape):
    """Peak memory of a bf16-autocast forward + backward, beyond the inputs and their gradients,
    stays below a single bf16 B × C buffer."""
    batch, classes, dim = (GPU_SHAPES | TALL)[shape]
    gen = torch.Generator(device="cuda").manual_seed(83)
    embeddings = torch.randn(batch, dim, device="cuda", generator=gen, requires_grad=True)
    weight = (0.01 * torch.randn(classes, dim, device="cuda", generator=gen)).requires_grad_()
    labels = torch.randint(0, classes, (batch,), device="cuda", generator=gen)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = margin_ccs_loss(embeddings, weight, labels, backend="triton")
        out.loss.backward()

    step()  # compiles the kernels
    embeddings.grad = weight.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    gradients = (embeddings.numel() + weight.numel()) * 4
    extra = torch.cuda.max_memory_allocated() - base - gradients
    assert extra < batch * classes * 2, f"{extra / 2**20:.1f} MiB beyond inputs and gradients"


@pytest.mark.gpu
def test_gpu_deterministic_path_is_bitwise_reproducible(deterministic):
    batch, classes, dim = GPU_SHAPES["S"]
    problem = make_problem(batch, classes, dim, dtype=torch.bfloat16, seed=89, device="cuda")
    runs = []
    for _ in range(2):
        embeddings = problem.embeddings.clone().requires_grad_()
        weight = problem.weight.float().requires_grad_()
        margin_ccs_loss(embeddings, weight, problem.labels, backend="triton").loss.backward()
        runs.append((embeddings.grad, weight.grad))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
