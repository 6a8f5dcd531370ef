"""The compiled extension ``crfiqa_kernels._C`` and the ``cuda`` backend.

Without a GPU: the extension was built (when ``nvcc`` exists), links the CUDA runtime and not
libtorch, its launchers reject bad arguments with a ValueError naming them before any CUDA call,
and a launch without a GPU raises a RuntimeError instead of crashing; the backend reports itself
unavailable and resolves with a clear error. With a GPU (``gpu`` marker): the kernels against the
float64 chunked backend through the kernel contract — per split, out-of-range labels, odd and
strided shapes, mixed dtypes, both margin gradients, the deterministic and atomic paths. The public
op against the oracle is covered by test_backends.py, which includes ``cuda`` when it is available;
tests/gpu/run_memcheck.sh runs these tests under compute-sanitizer.
"""
from __future__ import annotations

import importlib.machinery
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from crfiqa_kernels import Margin, margin_ccs_loss
from crfiqa_kernels.backends import chunked, cuda, resolve
from crfiqa_kernels.combine import combine_partials

NVCC = os.environ.get("CUDACXX") or shutil.which("nvcc")
needs_extension = pytest.mark.skipif(not cuda.extension_built(), reason="crfiqa_kernels._C was not built (no nvcc)")
ARCFACE = Margin.arcface(s=64.0, m=0.5)
COMBINED = Margin(s=32.0, m1=1.1, m2=0.3, m3=0.1)


# ------------------------------------------------------------------------------------------------
# Build and import, without a GPU.
# ------------------------------------------------------------------------------------------------


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed: the package installs without the extension")
def test_extension_is_built_where_nvcc_exists():
    from crfiqa_kernels import _C

    assert cuda.extension_built()
    assert _C.ARCHITECTURES and all(cuda._ARCH.match(arch) for arch in _C.ARCHITECTURES)
    if not (os.environ.get("CRFIQA_CUDA_ARCHS") or os.environ.get("CMAKE_CUDA_ARCHITECTURES")):
        assert _C.ARCHITECTURES == ["80", "90a"]


@needs_extension
def test_extension_loads_without_torch_or_a_shared_cuda_runtime():
    """Loaded alone in a fresh interpreter, the module maps neither libtorch nor libcudart.so."""
    path = cuda._C.__file__
    script = textwrap.dedent(f"""
        import importlib.machinery, importlib.util, json, sys
        loader = importlib.machinery.ExtensionFileLoader("_C", {path!r})
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader("_C", loader))
        loader.exec_module(module)
        maps = open("/proc/self/maps").read()
        print(json.dumps({{"torch": "torch" in sys.modules,
                           "libs": sorted({{line.split()[-1].rsplit("/", 1)[-1] for line in maps.splitlines()
                                           if ".so" in line}})}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert not loaded["torch"]
    assert not [lib for lib in loaded["libs"] if lib.startswith(("libtorch", "libc10", "libcudart"))], loaded["libs"]


def _fake_args(**overrides):
    """Launcher arguments for B = 3, C = 7, D = 5 at aligned fake addresses (never dereferenced:
    validation rejects them or the runtime fails first)."""
    from crfiqa_kernels import _C

    def matrix(ptr, dtype, rows, cols, row_stride=None, col_stride=1):
        return _C.Matrix(ptr=ptr, dtype=dtype, rows=rows, cols=cols,
                         row_stride=cols if row_stride is None else row_stride, col_stride=col_stride)

    def vector(ptr, dtype, length):
        return _C.Vector(ptr=ptr, dtype=dtype, length=length)

    f32, i64 = _C.DTYPE_FLOAT32, _C.DTYPE_INT64
    common = dict(
        device=0, stream=0, policy=_C.POLICY_3XTF32,
        e=matrix(1 << 20, f32, 3, 5), weight=matrix(2 << 20, f32, 7, 5),
        w_inv_norm=vector(3 << 20, f32, 7), labels=vector(4 << 20, i64, 3), margin=(64.0, 1.0, 0.5, 0.0),
    )
    forward = dict(common, splits=1, row_max=vector(5 << 20, f32, 3), row_sumexp=vector(6 << 20, f32, 3),
                   target_cos=vector(7 << 20, f32, 3), nn_cos=vector(8 << 20, f32, 3),
                   nn_index=vector(9 << 20, i64, 3))
    rows = dict(common, lse=vector(5 << 20, f32, 3), row_grad=vector(6 << 20, f32, 3), exact_margin_grad=True)
    dweight = dict(rows, d_weight=matrix(7 << 20, f32, 7, 5))
    dembedding = dict(rows, splits=1, deterministic=True, d_e=matrix(8 << 20, f32, 3, 5))
    args = {"forward_partials": forward, "backward_dweight": dweight, "backward_dembedding": dembedding}
    for launcher, changes in overrides.items():
        args[launcher].update(changes(matrix, vector) if callable(changes) else changes)
    return args


@needs_extension
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
def test_launch_without_gpu_raises_instead_of_crashing():
    """In a subprocess, so that a crash would show as a signal rather than take pytest down."""
    script = textwrap.dedent("""
        import json
        from crfiqa_kernels import _C
        from tests.crfiqa_kernels.test_cuda_extension import _fake_args
        report = {"available": _C.kernel_image_available(0)}
        for name, kwargs in _fake_args().items():
            try:
                getattr(_C, name)(**kwargs)
                report[name] = "no error"
            except Exception as error:
                report[name] = [type(error).__name__, str(error)]
        print(json.dumps(report))
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root, timeout=120)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    report = json.loads(result.stdout)
    assert report.pop("available") is False
    for name, (kind, message) in report.items():
        assert kind == "RuntimeError", (name, kind, message)
        assert message.startswith("CUDA error in "), message


BAD_ARGUMENTS = {
    "policy": ({"forward_partials": {"policy": 9}}, "policy: unknown code 9"),
    "dtype code": ({"backward_dweight": lambda m, v: {"e": m(1 << 20, 7, 3, 5)}}, "e: unknown dtype code 7"),
    "dtype vs policy": ({"forward_partials": lambda m, v: {"e": m(1 << 20, 1, 3, 5)}},
                        "e: dtype float16 does not match the policy's float32"),
    "negative rows": ({"forward_partials": lambda m, v: {"e": m(1 << 20, 0, -3, 5)}}, "e: rows must be ≥ 1, got -3"),
    "zero columns": ({"backward_dembedding": lambda m, v: {"weight": m(1 << 20, 0, 7, 0)}},
                     "weight: cols must be ≥ 1"),
    "null pointer": ({"forward_partials": lambda m, v: {"weight": m(0, 0, 7, 5)}}, "weight: null pointer"),
    "misaligned": ({"forward_partials": lambda m, v: {"w_inv_norm": v((3 << 20) + 2, 0, 7)}},
                   "w_inv_norm: pointer 3145730 is not aligned"),
    "column stride": ({"backward_dweight": lambda m, v: {"weight": m(2 << 20, 0, 7, 5, 10, 2)}},
                      "weight: column stride must be 1, got 2"),
    "row stride": ({"forward_partials": lambda m, v: {"e": m(1 << 20, 0, 3, 5, 4)}},
                   "e: row stride 4 is smaller than its 5 columns"),
    "embedding size": ({"forward_partials": lambda m, v: {"weight": m(2 << 20, 0, 7, 6)}},
                       "weight: 6 columns but e has 5"),
    "labels dtype": ({"backward_dweight": lambda m, v: {"labels": v(4 << 20, 0, 3)}}, "labels: must be int64"),
    "labels length": ({"forward_partials": lambda m, v: {"labels": v(4 << 20, 3, 4)}}, "labels: length must be 3"),
    "output length": ({"forward_partials": lambda m, v: {"nn_cos": v(8 << 20, 0, 2)}}, "nn_cos: length must be 3"),
    "splits zero": ({"forward_partials": {"splits": 0}}, "splits: must lie in [1, 1]"),
    "splits beyond tiles": ({"backward_dembedding": {"splits": 2}}, "splits: must lie in [1, 1]"),
    "device": ({"backward_dembedding": {"device": -1}}, "device: must be a CUDA device index ≥ 0"),
    "stream": ({"forward_partials": {"stream": -5}}, "stream: must be a CUDA stream handle"),
    "margin": ({"backward_dweight": {"margin": (64.0, 1.0, math.nan, 0.0)}}, "margin: (s, m1, m2, m3) must be finite"),
    "scale": ({"forward_partials": {"margin": (0.0, 1.0, 0.5, 0.0)}}, "margin: s must be positive"),
    "d_weight": ({"backward_dweight": lambda m, v: {"d_weight": m(7 << 20, 1, 7, 5)}},
                 "d_weight: must have weight's dtype and shape"),
}


@needs_extension
@pytest.mark.parametrize("case", BAD_ARGUMENTS, ids=str)
def test_launchers_reject_bad_arguments_before_touching_the_device(case):
    """ValueError naming the argument; on a machine without a GPU any CUDA call would have raised a
    RuntimeError instead, so the ValueError also shows that validation comes first."""
    overrides, message = BAD_ARGUMENTS[case]
    (launcher,) = overrides
    kwargs = _fake_args(**overrides)[launcher]
    with pytest.raises(ValueError) as error:
        getattr(cuda._C, launcher)(**kwargs)
    assert str(error.value).startswith(message), str(error.value)


@needs_extension
def test_dembedding_output_shape_follows_the_path():
    """The deterministic path wants splits · B rows, the atomic path B rows."""
    atomic_with_split_rows = _fake_args(backward_dembedding=lambda m, v: {
        "deterministic": False, "d_e": m(8 << 20, 0, 2 * 3, 5)})["backward_dembedding"]
    with pytest.raises(ValueError, match=r"d_e: must be float32 of shape \(3, 5\)"):
        cuda._C.backward_dembedding(**atomic_with_split_rows)


@needs_extension
def test_empty_last_split_is_rejected():
    # 5 class tiles in 4 splits: ⌈5/4⌉ = 2 tiles each leaves the fourth split empty.
    classes = 5 * cuda._C.FORWARD_BLOCK_CLASSES
    kwargs = _fake_args(forward_partials=lambda m, v: {
        "weight": m(2 << 20, 0, classes, 5), "w_inv_norm": v(3 << 20, 0, classes), "splits": 4,
        "row_max": v(5 << 20, 0, 12), "row_sumexp": v(6 << 20, 0, 12), "target_cos": v(7 << 20, 0, 12),
        "nn_cos": v(8 << 20, 0, 12), "nn_index": v(9 << 20, 3, 12)})["forward_partials"]
    with pytest.raises(ValueError, match="would leave the last one empty; use 3"):
        cuda._C.forward_partials(**kwargs)


# ------------------------------------------------------------------------------------------------
# The backend's Python side, without a GPU.
# ------------------------------------------------------------------------------------------------


def test_backend_is_unavailable_off_cuda_devices():
    for device in ("cpu", "meta"):
        assert cuda.available(torch.device(device)) is False
    with pytest.raises(ValueError, match="backend 'cuda' is not available on device cpu"):
        resolve("cuda", torch.device("cpu"))
    if not torch.cuda.is_available():
        assert cuda.available(torch.device("cuda")) is False
        assert cuda.available("cuda:0") is False


def test_contract_functions_refuse_cpu_tensors():
    e_hat, weight = torch.randn(3, 8), torch.randn(5, 8)
    inv, labels = torch.ones(5), torch.tensor([0, 1, -1])
    with pytest.raises(ValueError, match="the cuda backend needs the built extension and a CUDA device"):
        cuda.forward_partials(e_hat, weight, inv, labels, ARCFACE)
    with pytest.raises(ValueError, match="the cuda backend needs"):
        cuda.backward(e_hat.double(), weight.double(), inv, labels, ARCFACE, torch.zeros(3), torch.ones(3), "exact")
    with pytest.raises(ValueError, match="margin_grad must be one of"):
        cuda.backward(e_hat, weight, inv, labels, ARCFACE, torch.zeros(3), torch.ones(3), "approximate")


@pytest.mark.parametrize(
    ("capability", "architectures", "expected"),
    [
        ((8, 0), ["80", "90a"], True),
        ((8, 6), ["80", "90a"], True),   # sm_80 SASS runs on later minors of major 8
        ((8, 9), ["80-real"], True),
        ((9, 0), ["80", "90a"], True),
        ((9, 0), ["80"], False),         # only through a PTX JIT: not claimed
        ((10, 0), ["80", "90a"], False),  # 90a code runs on 9.0 alone
        ((7, 5), ["80", "90a"], False),
        ((12, 1), ["120f"], True),
        ((8, 0), ["86"], False),
        ((8, 0), ["native"], False),
    ],
)
def test_architecture_rule(capability, architectures, expected):
    assert cuda.runs_on(capability, architectures) is expected


def test_whole_splits_leave_no_split_empty():
    """The launchers cut the tiles into runs of ⌈tiles / splits⌉ and refuse an empty last run."""
    for tiles in range(1, 60):
        for requested in range(1, 70):
            splits = cuda.whole_splits(requested, tiles)
            per_split = math.ceil(tiles / splits)
            assert 1 <= splits <= min(requested, tiles)
            assert (splits - 1) * per_split < tiles <= splits * per_split
    with pytest.raises(ValueError, match="splits must be ≥ 1"):
        cuda.whole_splits(0, 4)


@needs_extension
def test_split_plans_fill_the_device_and_bound_the_buffers():
    # L shape on 132 multiprocessors: 8 row tiles ask for 33 splits of the 670 class tiles; runs of
    # ⌈670 / 33⌉ = 21 tiles make 32 non-empty splits.
    assert cuda.forward_splits(512, 85_742, 132) == 32
    assert cuda.forward_splits(1, 2, 132) == 1
    # dê: 2 column chunks × 8 row tiles per split; the deterministic buffers stay within dW's size.
    assert cuda.backward_splits(512, 85_742, 512, 132, deterministic=False) == 17
    assert cuda.backward_splits(512, 1_000, 512, 132, deterministic=True) == 1
    assert cuda.backward_splits(4_096, 257_489, 512, 132, deterministic=True) == 3


@needs_extension
def test_tile_products_follow_allow_tf32():
    previous = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        assert cuda.product_policy(torch.float32) == cuda._C.POLICY_TF32
        torch.backends.cuda.matmul.allow_tf32 = False
        assert cuda.product_policy(torch.float32) == cuda._C.POLICY_3XTF32
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    assert cuda.product_policy(torch.bfloat16) == cuda._C.POLICY_BFLOAT16
    assert cuda.product_policy(torch.float16) == cuda._C.POLICY_FLOAT16
    with pytest.raises(TypeError, match="e_hat must be float32, float16 or bfloat16"):
        cuda.product_policy(torch.float64)


# ------------------------------------------------------------------------------------------------
# On a GPU: the kernels through the contract, against the chunked backend in float64.
# ------------------------------------------------------------------------------------------------

# Absolute tolerance on cosines per product kind (fp32 accumulation of exactly rounded operands;
# tf32 rounds the operands to 10 mantissa bits). Logits scale it by s.
COSINE_TOLERANCE = {"half": 2e-5, "3xtf32": 2e-5, "tf32": 2e-3}


def _problem(batch, classes, dim, dtype, weight_dtype=None, *, seed=0, labels=None):
    gen = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    e_hat = torch.nn.functional.normalize(embeddings, dim=1).to(dtype).cuda()
    weight = (0.01 * torch.randn(classes, dim, generator=gen, dtype=torch.float64)).to(weight_dtype or dtype).cuda()
    w_inv_norm = (1.0 / weight.double().norm(dim=1).clamp(min=1e-12)).float()
    if labels is None:
        labels = torch.randint(-1, classes, (batch,), generator=gen)
    return e_hat, weight, w_inv_norm, torch.as_tensor(labels, dtype=torch.int64).cuda()


def _rounded_operands(e_hat, weight):
    """What the tensor cores multiply, in float64: ê as given, W rounded to ê's dtype."""
    return e_hat.double(), weight.to(e_hat.dtype).double()


def _cosine_tolerance(dtype):
    if dtype in (torch.float16, torch.bfloat16):
        return COSINE_TOLERANCE["half"]
    return COSINE_TOLERANCE["tf32" if torch.backends.cuda.matmul.allow_tf32 else "3xtf32"]


def _reference_partials(e_hat, weight, w_inv_norm, labels, margin, splits, block):
    """The chunked backend in float64 over the same class splits as the kernel."""
    classes = weight.shape[0]
    tiles = math.ceil(classes / block)
    per_split = math.ceil(tiles / splits)
    ranges = [(s * per_split * block, min((s + 1) * per_split * block, classes)) for s in range(splits)]
    e64, w64 = _rounded_operands(e_hat, weight)
    original = chunked.tile_ranges
    chunked.tile_ranges = lambda c, b: iter(ranges)
    try:
        return chunked.forward_partials(e64, w64, w_inv_norm.double(), labels, margin)
    finally:
        chunked.tile_ranges = original


def _assert_partials_close(got, want, dtype, scale):
    tol = _cosine_tolerance(dtype)
    for name in ("row_max", "row_sumexp", "target_cos", "nn_cos"):
        value, expected = getattr(got, name).double(), getattr(want, name)
        assert torch.equal(torch.isnan(value), torch.isnan(expected)), name
        finite = ~torch.isnan(expected)
        atol = {"row_max": scale * tol, "row_sumexp": 4 * scale * tol * expected.abs().max().item()}.get(name, tol)
        torch.testing.assert_close(value[finite], expected[finite], rtol=0, atol=atol, msg=name)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [(1, 2, 1), (3, 129, 33), (70, 1000, 96), (65, 3001, 300)], ids=str)
def test_forward_partials_per_split(dtype, shape):
    batch, classes, dim = shape
    e_hat, weight, w_inv_norm, labels = _problem(batch, classes, dim, dtype, seed=sum(shape))
    tiles = math.ceil(classes / cuda._C.FORWARD_BLOCK_CLASSES)
    for splits in sorted({1, cuda.whole_splits(3, tiles), tiles}):
        got = cuda.forward_partials(e_hat, weight, w_inv_norm, labels, ARCFACE, splits=splits)
        assert got.row_max.shape == (splits, batch) and got.nn_index.dtype == torch.int64
        want = _reference_partials(e_hat, weight, w_inv_norm, labels, ARCFACE, splits, cuda._C.FORWARD_BLOCK_CLASSES)
        _assert_partials_close(got, want, dtype, ARCFACE.s)
        # Lowest index on ties is exact only without near-ties: check that the index attains the max.
        e64, w64 = _rounded_operands(e_hat, weight)
        cos = (e64 @ w64.T * w_inv_norm.double()).clamp(-1, 1)
        picked = cos.gather(1, got.nn_index.T.clamp(0, classes - 1)).T
        finite = torch.isfinite(got.nn_cos)
        torch.testing.assert_close(picked[finite], want.nn_cos[finite], rtol=0, atol=2 * _cosine_tolerance(dtype))


@pytest.mark.gpu
def test_forward_ties_take_the_lowest_index():
    """Duplicated class centers tie exactly (same place in their class tiles, so the same lane and
    register compute them): the lowest index wins, within a split and across splits."""
    block = cuda._C.FORWARD_BLOCK_CLASSES
    twins = [5, 5 + 2 * block, 5 + 5 * block]
    e_hat, weight, _, _ = _problem(9, 6 * block - 40, 64, torch.float32, seed=4)
    weight[twins] = weight[twins[-1]].clone()
    w_inv_norm = (1.0 / weight.double().norm(dim=1)).float()
    noise = 0.001 * torch.randn(9, 64, device="cuda", dtype=torch.float64)
    e_hat = torch.nn.functional.normalize(weight[twins[-1]].double() + noise, dim=1).float()
    labels = torch.full((9,), -1, dtype=torch.int64, device="cuda")
    for splits in (1, 3):
        stats = combine_partials(cuda.forward_partials(e_hat, weight, w_inv_norm, labels, ARCFACE, splits=splits))
        assert bool((stats.nn_index == twins[0]).all()), stats.nn_index


@pytest.mark.gpu
def test_labels_outside_the_shard_count_as_absent():
    """Any label value is safe: outside [0, C) it reads as "no local target" (−1)."""
    e_hat, weight, w_inv_norm, labels = _problem(6, 300, 40, torch.bfloat16, seed=2)
    odd = torch.tensor([-1, -7, 300, 10**12, -(10**12), 5], device="cuda")
    absent = torch.where((odd >= 0) & (odd < 300), odd, -1)
    lse, row_grad = torch.full((6,), 3.0, device="cuda"), torch.rand(6, device="cuda")
    got = cuda.forward_partials(e_hat, weight, w_inv_norm, odd, ARCFACE, splits=2)
    want = cuda.forward_partials(e_hat, weight, w_inv_norm, absent, ARCFACE, splits=2)
    for a, b in zip(got, want):
        assert torch.equal(a.nan_to_num(), b.nan_to_num())
    for a, b in zip(cuda.backward(e_hat, weight, w_inv_norm, odd, ARCFACE, lse, row_grad, "exact"),
                    cuda.backward(e_hat, weight, w_inv_norm, absent, ARCFACE, lse, row_grad, "exact")):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def _reference_backward(e_hat, weight, w_inv_norm, labels, margin, lse, row_grad, margin_grad):
    e64, w64 = _rounded_operands(e_hat, weight)
    return chunked.backward(e64, w64, w_inv_norm.double(), labels, margin, lse.double(), row_grad.double(), margin_grad)


def _assert_gradients_close(got, want, dtype):
    d_e, d_w = got
    d_e_ref, d_w_ref = want
    assert d_e.dtype == torch.float32
    # The second products round ∂ℓ/∂c to the compute dtype (as the chunked backend does).
    fp32 = 2e-3 if torch.backends.cuda.matmul.allow_tf32 else 1e-5
    rel = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}.get(dtype, fp32)
    for value, expected in ((d_e, d_e_ref), (d_w, d_w_ref)):
        scale = max(1.0, expected.abs().max().item())
        torch.testing.assert_close(value.double(), expected, rtol=0, atol=rel * scale)


@pytest.mark.gpu
@pytest.mark.parametrize("margin_grad", ["exact", "straight_through"])
@pytest.mark.parametrize("margin", [ARCFACE, COMBINED], ids=["arcface", "combined"])
@pytest.mark.parametrize(("dtype", "weight_dtype"), [
    (torch.float32, torch.float32), (torch.float16, torch.float16), (torch.bfloat16, torch.bfloat16),
    (torch.bfloat16, torch.float32), (torch.float16, torch.float32), (torch.float16, torch.bfloat16),
], ids=str)
def test_backward_matches_float64(dtype, weight_dtype, margin, margin_grad):
    e_hat, weight, w_inv_norm, labels = _problem(37, 531, 300, dtype, weight_dtype, seed=9)
    stats = combine_partials(_reference_partials(e_hat, weight, w_inv_norm, labels, margin, 1, 531))
    lse = stats.lse.float()
    row_grad = torch.where(labels >= 0, torch.rand(37, device="cuda") + 0.5, 0.0)
    got = cuda.backward(e_hat, weight, w_inv_norm, labels, margin, lse, row_grad, margin_grad, splits=3)
    assert got[1].dtype == weight_dtype and got[1].shape == weight.shape
    _assert_gradients_close(got, _reference_backward(e_hat, weight, w_inv_norm, labels, margin, lse, row_grad,
                                                     margin_grad), dtype)


@pytest.mark.gpu
def test_deterministic_path_is_reproducible_and_agrees_with_atomics():
    e_hat, weight, w_inv_norm, labels = _problem(130, 4000, 256, torch.bfloat16, seed=5)
    lse = torch.full((130,), 5.0, device="cuda")
    row_grad = torch.rand(130, device="cuda")
    enabled = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        first = cuda.backward(e_hat, weight, w_inv_norm, labels, ARCFACE, lse, row_grad, "exact", splits=7)
        second = cuda.backward(e_hat, weight, w_inv_norm, labels, ARCFACE, lse, row_grad, "exact", splits=7)
    finally:
        torch.use_deterministic_algorithms(enabled)
    atomic = cuda.backward(e_hat, weight, w_inv_norm, labels, ARCFACE, lse, row_grad, "exact", splits=7)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert torch.equal(first[1], atomic[1])  # dW never uses atomics
    torch.testing.assert_close(first[0], atomic[0], rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_strided_and_misaligned_operands(dtype):
    """Slices of wider buffers starting one element in (padded row stride, no 16-byte alignment):
    the element-wise load path gives what the vector path gives on contiguous copies."""
    e_hat, weight, w_inv_norm, labels = _problem(11, 301, 40, dtype, seed=8)

    def misaligned(matrix):
        padded = torch.zeros(matrix.shape[0], 48, dtype=dtype, device="cuda")
        padded[:, 1:41] = matrix
        return padded[:, 1:41]

    e_strided, w_strided = misaligned(e_hat), misaligned(weight)
    assert w_strided.stride(0) == 48 and w_strided.data_ptr() % 16 != 0 and weight.data_ptr() % 16 == 0
    lse, row_grad = torch.full((11,), 4.0, device="cuda"), torch.rand(11, device="cuda")
    for a, b in zip(cuda.forward_partials(e_strided, w_strided, w_inv_norm, labels, ARCFACE),
                    cuda.forward_partials(e_hat, weight, w_inv_norm, labels, ARCFACE)):
        assert torch.equal(a.nan_to_num(), b.nan_to_num())
    for a, b in zip(cuda.backward(e_strided, w_strided, w_inv_norm, labels, ARCFACE, lse, row_grad, "exact"),
                    cuda.backward(e_hat, weight, w_inv_norm, labels, ARCFACE, lse, row_grad, "exact")):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.gpu
def test_float64_goes_to_the_chunked_backend():
    e_hat, weight, w_inv_norm, labels = _problem(5, 40, 16, torch.float64, seed=1)
    got = cuda.forward_partials(e_hat, weight, w_inv_norm, labels, ARCFACE)
    assert got.row_max.dtype == torch.float64


@pytest.mark.gpu
def test_pointers_outside_device_memory_are_rejected():
    """Device tensors everywhere but one host tensor: a ValueError naming it, no launch."""
    from crfiqa_kernels import _C

    e_hat, weight, w_inv_norm, labels = _problem(3, 7, 5, torch.float32, seed=3)
    outputs = torch.empty(4, 3, device="cuda")
    host = torch.zeros(3, dtype=torch.int64)

    def vector(t):
        code = _C.DTYPE_INT64 if t.dtype == torch.int64 else _C.DTYPE_FLOAT32
        return _C.Vector(ptr=t.data_ptr(), dtype=code, length=t.numel())

    def matrix(t):
        return _C.Matrix(ptr=t.data_ptr(), dtype=_C.DTYPE_FLOAT32, rows=t.shape[0], cols=t.shape[1],
                         row_stride=t.stride(0), col_stride=1)

    with pytest.raises(ValueError, match="nn_index: not device memory"):
        _C.forward_partials(
            device=torch.cuda.current_device(), stream=torch.cuda.current_stream().cuda_stream,
            policy=_C.POLICY_3XTF32, e=matrix(e_hat), weight=matrix(weight), w_inv_norm=vector(w_inv_norm),
            labels=vector(labels), margin=(64.0, 1.0, 0.5, 0.0), splits=1, row_max=vector(outputs[0]),
            row_sumexp=vector(outputs[1]), target_cos=vector(outputs[2]), nn_cos=vector(outputs[3]),
            nn_index=vector(host))


@pytest.mark.gpu
def test_available_on_the_gpus_it_was_built_for():
    capability = torch.cuda.get_device_capability()
    assert cuda.available("cuda") == cuda.runs_on(capability, cuda._C.ARCHITECTURES)


@pytest.mark.gpu
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
