"""The compiled extension ``crfiqa_kernels._C`` and the ``cuda`` backend's Python side, without a GPU.

The extension was built (when ``nvcc`` exists), links the CUDA runtime and not libtorch; its
launchers reject bad arguments with a ValueError naming them before any CUDA call, and a launch
without a GPU raises a RuntimeError instead of crashing; the launch plans respect CUDA's grid
limits at any size; the backend reports itself unavailable off CUDA devices and says, through the
registry, that float64 is served by ``chunked``. The kernels' numerics are in test_cuda_numerics.py
(gpu-marked), their register use in test_cuda_resources.py.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from crfiqa_kernels.backends import cuda, get, resolve, serving
from crfiqa_kernels.backends.contract import LogitParams

from ..flags import torch_flags

NVCC = os.environ.get("CUDACXX") or shutil.which("nvcc")
needs_extension = pytest.mark.skipif(not cuda.extension_built(), reason="crfiqa_kernels._C was not built (no nvcc)")
LOGITS = LogitParams(s=64.0)
# CUDA's grid limits: axis 0 below 2^31, axes 1 and 2 at most 65,535.
GRID_X_MAX, GRID_YZ_MAX = 2**31 - 1, 65_535
# The largest sizes the launches must take (DESIGN §8), and devices to plan for: (multiprocessors,
# opt-in shared memory per block) of an A100 and an H100/H200.
MAX_CLASSES, MAX_BATCH = 50_000_000, 65_536
DEVICES = {"a100": (108, 166_912), "h100": (132, 232_448)}


# ------------------------------------------------------------------------------------------------
# Build and import.
# ------------------------------------------------------------------------------------------------


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed: the package installs without the extension")
@pytest.mark.skipif(os.environ.get("CRFIQA_BUILD_CUDA") == "0", reason="installed with CRFIQA_BUILD_CUDA=0")
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
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert not loaded["torch"]
    assert not [lib for lib in loaded["libs"] if lib.startswith(("libtorch", "libc10", "libcudart"))], loaded["libs"]


# ------------------------------------------------------------------------------------------------
# Launchers: validation first, a RuntimeError without a GPU.
# ------------------------------------------------------------------------------------------------


def _fake_args(**overrides):
    """Launcher arguments for B = 3, C = 7, D = 5 at aligned fake addresses (never dereferenced:
    validation rejects them or the runtime fails first)."""
    from crfiqa_kernels import _C

    def matrix(ptr, dtype, rows, cols, row_stride=None, col_stride=1):
        return _C.Matrix(
            ptr=ptr,
            dtype=dtype,
            rows=rows,
            cols=cols,
            row_stride=cols if row_stride is None else row_stride,
            col_stride=col_stride,
        )

    def vector(ptr, dtype, length):
        return _C.Vector(ptr=ptr, dtype=dtype, length=length)

    f32, i64 = _C.DTYPE_FLOAT32, _C.DTYPE_INT64
    common = {
        "device": 0,
        "stream": 0,
        "policy": _C.POLICY_3XTF32,
        "e": matrix(1 << 20, f32, 3, 5),
        "weight": matrix(2 << 20, f32, 7, 5),
        "w_inv_norm": vector(3 << 20, f32, 7),
        "labels": vector(4 << 20, i64, 3),
        "logits": (64.0, 0.0, 0.0),
        "negative": 0,
        "threshold": vector(0, f32, 0),
    }
    forward = dict(
        common,
        splits=1,
        row_max=vector(5 << 20, f32, 3),
        row_sumexp=vector(6 << 20, f32, 3),
        target_cos=vector(7 << 20, f32, 3),
        nn_cos=vector(8 << 20, f32, 3),
        nn_index=vector(9 << 20, i64, 3),
    )
    backward = dict(
        common,
        lse=vector(5 << 20, f32, 3),
        row_grad=vector(6 << 20, f32, 3),
        blocks=1,
        deterministic=True,
        scratch=vector(0, f32, 0),
        d_e=matrix(8 << 20, f32, 3, 5),
        d_weight=matrix(7 << 20, f32, 7, 5),
    )
    args = {"forward_partials": forward, "backward": backward}
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
        from tests.crfiqa_kernels.test_cuda_bindings import _fake_args
        report = {"available": _C.kernel_image_available(0)}
        for name, kwargs in _fake_args().items():
            try:
                getattr(_C, name)(**kwargs)
                report[name] = "no error"
            except Exception as error:
                report[name] = [type(error).__name__, str(error)]
        try:
            _C.device_properties(0)
            report["device_properties"] = "no error"
        except Exception as error:
            report["device_properties"] = [type(error).__name__, str(error)]
        print(json.dumps(report))
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, cwd=root, timeout=120
    )
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    report = json.loads(result.stdout)
    assert report.pop("available") is False
    assert set(report) == {"forward_partials", "backward", "device_properties"}
    for name, (kind, message) in report.items():
        assert kind == "RuntimeError", (name, kind, message)
        assert message.startswith("CUDA error in "), message


BAD_ARGUMENTS = {
    "policy": ({"forward_partials": {"policy": 9}}, "policy: unknown code 9"),
    "dtype code": ({"backward": lambda m, v: {"e": m(1 << 20, 7, 3, 5)}}, "e: unknown dtype code 7"),
    "dtype vs policy": (
        {"forward_partials": lambda m, v: {"e": m(1 << 20, 1, 3, 5)}},
        "e: dtype float16 does not match the policy's float32",
    ),
    "negative rows": ({"forward_partials": lambda m, v: {"e": m(1 << 20, 0, -3, 5)}}, "e: rows must be ≥ 1, got -3"),
    "zero columns": ({"backward": lambda m, v: {"weight": m(1 << 20, 0, 7, 0)}}, "weight: cols must be ≥ 1"),
    "null pointer": ({"forward_partials": lambda m, v: {"weight": m(0, 0, 7, 5)}}, "weight: null pointer"),
    "misaligned": (
        {"forward_partials": lambda m, v: {"w_inv_norm": v((3 << 20) + 2, 0, 7)}},
        "w_inv_norm: pointer 3145730 is not aligned",
    ),
    "column stride": (
        {"backward": lambda m, v: {"weight": m(2 << 20, 0, 7, 5, 10, 2)}},
        "weight: column stride must be 1, got 2",
    ),
    "row stride": (
        {"forward_partials": lambda m, v: {"e": m(1 << 20, 0, 3, 5, 4)}},
        "e: row stride 4 is smaller than its 5 columns",
    ),
    "embedding size": (
        {"forward_partials": lambda m, v: {"weight": m(2 << 20, 0, 7, 6)}},
        "weight: 6 columns but e has 5",
    ),
    "labels dtype": ({"backward": lambda m, v: {"labels": v(4 << 20, 0, 3)}}, "labels: must be int64"),
    "labels length": ({"forward_partials": lambda m, v: {"labels": v(4 << 20, 3, 4)}}, "labels: length must be 3"),
    "output length": ({"forward_partials": lambda m, v: {"nn_cos": v(8 << 20, 0, 2)}}, "nn_cos: length must be 3"),
    "lse length": ({"backward": lambda m, v: {"lse": v(5 << 20, 0, 4)}}, "lse: length must be 3"),
    "splits zero": ({"forward_partials": {"splits": 0}}, "splits: must lie in [1, 1]"),
    "splits beyond tiles": ({"forward_partials": {"splits": 2}}, "splits: must lie in [1, 1]"),
    "blocks": ({"backward": {"blocks": 0}}, "blocks: must be ≥ 1"),
    "device": ({"backward": {"device": -1}}, "device: must be a CUDA device index ≥ 0"),
    "stream": ({"forward_partials": {"stream": -5}}, "stream: must be a CUDA stream handle"),
    "logits": ({"backward": {"logits": (64.0, math.nan, 0.0)}}, "logits: (s, cos_clamp, t) must be finite"),
    "scale": ({"forward_partials": {"logits": (0.0, 0.0, 0.0)}}, "logits: s must be positive"),
    "clamp": ({"forward_partials": {"logits": (64.0, 1.0, 0.0)}}, "logits: cos_clamp must lie in"),
    "negative": ({"backward": {"negative": 3}}, "negative: must be 0"),
    "threshold missing": ({"forward_partials": {"negative": 1}}, "threshold: length must be 3"),
    "threshold without a transform": (
        {"backward": lambda m, v: {"threshold": v(10 << 20, 0, 3)}},
        "threshold: must be empty",
    ),
    "d_weight": (
        {"backward": lambda m, v: {"d_weight": m(7 << 20, 1, 7, 5)}},
        "d_weight: must have weight's dtype and shape",
    ),
    "d_e": ({"backward": lambda m, v: {"d_e": m(8 << 20, 3, 3, 5)}}, "d_e: must be float32, float16 or bfloat16"),
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
def test_backward_buffers_follow_the_path():
    """The deterministic path wants blocks · B rows of dê, the atomic path B; a scratch is either
    empty (ptr 0) or 16-byte aligned elements of the compute dtype."""
    cases = [
        (
            {"deterministic": False, "blocks": 2, "d_e": lambda m, v: m(8 << 20, 0, 2 * 3, 5)},
            r"d_e: must be float32 of shape \(3, 5\)",
        ),
        (
            {"deterministic": True, "blocks": 2, "d_e": lambda m, v: m(8 << 20, 0, 3, 5)},
            r"d_e: must be float32 of shape \(6, 5\)",
        ),
        ({"scratch": lambda m, v: v(1 << 24, 0, 0)}, "scratch: an empty scratch must have ptr 0"),
        ({"scratch": lambda m, v: v(1 << 24, 1, 64)}, "scratch: must be float32"),
        ({"scratch": lambda m, v: v((1 << 24) + 4, 0, 64)}, "scratch: must be 16-byte aligned"),
    ]
    for changes, message in cases:
        kwargs = _fake_args(
            backward=lambda m, v, changes=changes: {
                key: value(m, v) if callable(value) else value for key, value in changes.items()
            }
        )["backward"]
        with pytest.raises(ValueError, match=message):
            cuda._C.backward(**kwargs)


@needs_extension
def test_empty_last_split_is_rejected():
    # 5 class tiles in 4 splits: ⌈5/4⌉ = 2 tiles each leaves the fourth split empty.
    classes = 5 * cuda._C.FORWARD_BLOCK_CLASSES
    kwargs = _fake_args(
        forward_partials=lambda m, v: {
            "weight": m(2 << 20, 0, classes, 5),
            "w_inv_norm": v(3 << 20, 0, classes),
            "splits": 4,
            "row_max": v(5 << 20, 0, 12),
            "row_sumexp": v(6 << 20, 0, 12),
            "target_cos": v(7 << 20, 0, 12),
            "nn_cos": v(8 << 20, 0, 12),
            "nn_index": v(9 << 20, 3, 12),
        }
    )["forward_partials"]
    with pytest.raises(ValueError, match="would leave the last one empty; use 3"):
        cuda._C.forward_partials(**kwargs)
    with pytest.raises(ValueError, match="would leave the last one empty; use 3"):
        cuda._C.plan_forward(batch=3, classes=classes, splits=4)


# ------------------------------------------------------------------------------------------------
# Launch plans: CUDA's grid limits at any size, bounded memory, no CUDA call.
# ------------------------------------------------------------------------------------------------

CLASS_COUNTS = (1, 63, 64, 65, 10_572, 85_742, 257_489, 2_059_906, 4_200_000, 33_554_431, MAX_CLASSES)
BATCHES = (1, 64, 65, 512, 4_096, MAX_BATCH)


def _assert_grid_within_limits(grid):
    x, y, z = grid
    assert 1 <= x <= GRID_X_MAX and 1 <= y <= GRID_YZ_MAX and 1 <= z <= GRID_YZ_MAX, grid


@needs_extension
@pytest.mark.parametrize("batch", BATCHES)
def test_forward_grids_stay_within_cuda_limits(batch):
    """Every split count the backend may pick (its plan for any device size) and the extremes a caller
    may ask for (1 and one split per class tile)."""
    for classes in CLASS_COUNTS:
        tiles = math.ceil(classes / cuda._C.FORWARD_BLOCK_CLASSES)
        picks = {cuda.forward_splits(batch, classes, sms) for sms in (1, 108, 132, 1024)}
        for splits in picks | {1, tiles}:
            plan = cuda._C.plan_forward(batch=batch, classes=classes, splits=splits)
            _assert_grid_within_limits(plan["grid"])
            assert plan["blocks"] == math.ceil(batch / cuda._C.FORWARD_BLOCK_ROWS) * splits
            assert (splits - 1) * plan["tiles_per_split"] < tiles <= splits * plan["tiles_per_split"]


@needs_extension
def test_forward_plan_refuses_a_grid_past_two_to_the_31():
    with pytest.raises(ValueError, match="exceeds 2\\^31 - 1"):
        # 33,554,304 row tiles × 128 splits.
        cuda._C.plan_forward(batch=2**31 - 8192, classes=128 * 128, splits=128)


@needs_extension
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("deterministic", [False, True], ids=["atomic", "deterministic"])
@pytest.mark.parametrize("device", DEVICES)
def test_backward_plans_stay_within_cuda_limits_and_memory_bounds(dtype, deterministic, device):
    multiprocessors, shared = DEVICES[device]
    element = torch.empty((), dtype=dtype).element_size()
    most_tiles = 8 if element == 2 else 4
    rows_block, classes_block = cuda._C.BACKWARD_BLOCK_ROWS, cuda._C.BACKWARD_BLOCK_CLASSES
    for tf32 in (False, True) if dtype == torch.float32 else (False,):
        with torch_flags(tf32=tf32):
            for batch in BATCHES:
                for classes in CLASS_COUNTS:
                    for dim in (1, 512):
                        for blocks in (0, 1, 7, 10**9):
                            plan = cuda.backward_plan(
                                dtype,
                                batch,
                                classes,
                                dim,
                                multiprocessors=multiprocessors,
                                max_shared_bytes=shared,
                                deterministic=deterministic,
                                blocks=blocks,
                            )
                            _assert_grid_within_limits(plan["grid"])
                            group = plan["group_classes"]
                            assert group % classes_block == 0 and 1 <= group // classes_block <= most_tiles
                            assert plan["groups"] == math.ceil(classes / group)
                            assert plan["blocks"] <= plan["groups"]  # every block has a group
                            assert plan["shared_bytes"] <= shared
                            stride = plan["scratch_row_stride"]
                            assert stride >= math.ceil(batch / rows_block) * rows_block
                            assert (stride * element) % 16 == 0
                            if plan["scratch_in_shared"]:
                                assert plan["scratch_elements"] == 0
                            else:
                                assert plan["scratch_elements"] == plan["blocks"] * group * stride
                                # Bounded by a float32 dW's bytes (or one block's scratch when that is more).
                                assert plan["blocks"] == 1 or plan["scratch_elements"] * element <= 4 * classes * dim
                            expected_rows = plan["blocks"] * batch if deterministic else batch
                            assert plan["d_e_rows"] == expected_rows
                            if deterministic:
                                assert plan["blocks"] == 1 or plan["blocks"] * batch <= classes


@needs_extension
def test_backward_plan_balances_the_blocks_and_keeps_small_scratch_in_shared_memory():
    h100 = dict(zip(("multiprocessors", "max_shared_bytes"), DEVICES["h100"], strict=True))
    # Shape S in bf16: 166 class tiles on 132 SMs (one block each: the buffers take over half the
    # shared memory). The busiest block does 2 tiles whether groups hold 1 or 2: groups of 2, half the
    # dê atomics, 83 blocks; their scratch (128 × 520 bf16) does not fit beside the buffers ...
    plan = cuda.backward_plan(torch.bfloat16, 512, 10_572, 512, deterministic=False, **h100)
    assert plan["group_classes"] == 128 and plan["groups"] == 83 and plan["blocks"] == 83
    assert not plan["scratch_in_shared"] and plan["scratch_elements"] == 83 * 128 * 520
    # ... while with B = 64 it does (128 × 72 bf16).
    plan = cuda.backward_plan(torch.bfloat16, 64, 10_572, 512, deterministic=False, **h100)
    assert plan["scratch_in_shared"] and plan["scratch_elements"] == 0
    assert plan["shared_bytes"] <= DEVICES["h100"][1]
    # Shape L: 1,340 tiles; one tile per group would make the busiest block do 11, six do 12 (within
    # 1/8) with six times fewer dê atomics; 224 groups on 132 blocks; a global scratch.
    plan = cuda.backward_plan(torch.bfloat16, 512, 85_742, 512, deterministic=False, **h100)
    assert plan["group_classes"] == 6 * 64 and plan["groups"] == 224 and plan["blocks"] == 132
    assert not plan["scratch_in_shared"] and plan["scratch_elements"] == 132 * 6 * 64 * (512 + 8)
    # Shape Shard: 4,024 tiles, groups of 8 (31 per block at most) and a global scratch bounded by a
    # float32 dW's bytes.
    plan = cuda.backward_plan(torch.bfloat16, 4_096, 257_489, 512, deterministic=False, **h100)
    assert plan["group_classes"] == 512 and not plan["scratch_in_shared"]
    assert plan["scratch_elements"] == plan["blocks"] * 512 * (4_096 + 8)
    assert plan["scratch_elements"] * 2 <= 4 * 257_489 * 512
    # Deterministic: no more slices of (B, D) float32 than C / B.
    plan = cuda.backward_plan(torch.bfloat16, 4_096, 257_489, 512, deterministic=True, **h100)
    assert plan["blocks"] <= 257_489 // 4_096 and plan["d_e_rows"] == plan["blocks"] * 4_096


@needs_extension
def test_backend_needs_the_shared_memory_of_an_sm_80_or_sm_90():
    """The backward's buffers take 120 KiB (16 bits) / 154 KiB (fp32) a block: an A100 or H100 has room,
    an sm_86 / sm_89 (99 KiB) does not, and the backend then reports itself unavailable."""
    assert cuda.shared_memory_suffices(DEVICES["a100"][1]) and cuda.shared_memory_suffices(DEVICES["h100"][1])
    assert not cuda.shared_memory_suffices(99 * 1024)


def _plan_backward(**changes):
    """plan_backward for bf16, B = 1, C = 5, D = 8 on one multiprocessor with 100,000 bytes of shared
    memory, with ``changes``."""
    arguments = dict(
        policy=cuda._C.POLICY_BFLOAT16,
        batch=1,
        classes=5,
        dim=8,
        deterministic=False,
        multiprocessors=1,
        max_shared_bytes=100_000,
    )
    return cuda._C.plan_backward(**{**arguments, **changes})


@needs_extension
def test_backward_plan_rejects_bad_sizes():
    with pytest.raises(ValueError, match="batch: must lie in"):
        _plan_backward(batch=0)
    with pytest.raises(ValueError, match="policy: unknown code"):
        _plan_backward(policy=7)
    with pytest.raises(RuntimeError, match="bytes of shared memory per block"):
        _plan_backward(policy=cuda._C.POLICY_TF32, max_shared_bytes=48 * 1024)


# ------------------------------------------------------------------------------------------------
# The backend's Python side.
# ------------------------------------------------------------------------------------------------


def test_backend_is_unavailable_off_cuda_devices():
    for device in ("cpu", "meta"):
        assert cuda.available(torch.device(device)) is False
    with pytest.raises(ValueError, match="backend 'cuda' is not available on device cpu"):
        resolve("cuda", torch.device("cpu"))
    if not torch.cuda.is_available():
        assert cuda.available(torch.device("cuda")) is False
        assert cuda.available("cuda:0") is False


def test_float64_is_delegated_through_the_registry():
    """The cuda kernels do not run float64; the registry says who does, and hands out that module."""
    assert cuda.DELEGATES == {torch.float64: "chunked"}
    assert serving("cuda", torch.float64) == "chunked"
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        assert serving("cuda", dtype) == "cuda"
    assert get("cuda", torch.float64) is get("chunked")
    assert get("cuda", torch.bfloat16) is cuda
    with pytest.raises(ValueError, match="backend must be one of"):
        serving("auto", torch.float32)


def test_contract_functions_refuse_cpu_tensors():
    e_hat, weight = torch.randn(3, 8), torch.randn(5, 8)
    inv, labels = torch.ones(5), torch.tensor([0, 1, -1])
    with pytest.raises(ValueError, match="the cuda backend needs the built extension and a CUDA device"):
        cuda.forward_partials(e_hat, weight, inv, labels, LOGITS)
    with pytest.raises(ValueError, match="the cuda backend needs"):
        cuda.backward(e_hat.double(), weight.double(), inv, labels, LOGITS, torch.zeros(3), torch.ones(3))


@pytest.mark.parametrize(
    ("capability", "architectures", "expected"),
    [
        ((8, 0), ["80", "90a"], True),
        ((8, 6), ["80", "90a"], True),  # sm_80 SASS runs on later minors of major 8
        ((8, 9), ["80-real"], True),
        ((9, 0), ["80", "90a"], True),
        ((9, 0), ["80"], False),  # only through a PTX JIT: not claimed
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
def test_forward_split_plan_fills_the_device():
    # L shape on 132 multiprocessors: 8 row tiles ask for 33 splits of the 670 class tiles; runs of
    # ⌈670 / 33⌉ = 21 tiles make 32 non-empty splits.
    assert cuda.forward_splits(512, 85_742, 132) == 32
    assert cuda.forward_splits(1, 2, 132) == 1


@needs_extension
def test_tile_products_follow_allow_tf32():
    with torch_flags(tf32=True):
        assert cuda.product_policy(torch.float32) == cuda._C.POLICY_TF32
    with torch_flags(tf32=False):
        assert cuda.product_policy(torch.float32) == cuda._C.POLICY_3XTF32
    assert cuda.product_policy(torch.bfloat16) == cuda._C.POLICY_BFLOAT16
    assert cuda.product_policy(torch.float16) == cuda._C.POLICY_FLOAT16
    with pytest.raises(TypeError, match="e_hat must be float32, float16 or bfloat16"):
        cuda.product_policy(torch.float64)
