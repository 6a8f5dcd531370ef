"""The Triton kernels compiled for an H100 (sm_90) without one: every configuration the backend may
pick lowers (the code generator checks what the interpreter skips: loop-carried types, layouts,
every op), bf16/tf32 products use wgmma, no kernel spills registers, and new logit parameters
(scale, clamp, thresholds) compile nothing new.

Run in a subprocess without ``TRITON_INTERPRET`` (the kernels must be JIT functions there), with
whatever Triton the interpreter tests use; ``ptxas -v`` reports the registers and spills.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import triton

from crfiqa_kernels.backends.triton import config as triton_config

_HOPPER_COMPILE = r"""
import contextlib, io, json, re, sys
import torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from crfiqa_kernels.backends.contract import LogitParams
from crfiqa_kernels.backends.triton import backward_kernel as triton_bwd
from crfiqa_kernels.backends.triton import config as triton_config
from crfiqa_kernels.backends.triton import forward_kernel as triton_fwd

POINTEE = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32", torch.float64: "fp64",
           torch.int64: "i64"}
SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
REGISTERS = re.compile(r"Used (\d+) registers")


class Capture:
    # Stands in for a kernel: records what its launcher passes instead of launching.
    def __init__(self, kernel):
        self.kernel, self.args, self.kwargs = kernel, None, None

    def __getitem__(self, grid):
        def launch(**kwargs):  # the launchers pass every argument by keyword
            self.kwargs = dict(kwargs)
        return launch

    def source(self):
        constexprs = {name for name, param in zip(self.kernel.arg_names, self.kernel.params) if param.is_constexpr}
        signature, constants = {}, {}
        for name in self.kernel.arg_names:
            value = self.kwargs[name]
            if name in constexprs:
                signature[name], constants[name] = "constexpr", value
            elif isinstance(value, torch.Tensor):
                signature[name] = "*" + POINTEE[value.dtype]
            elif isinstance(value, tuple):  # strides: a tuple of i32
                signature[name] = tuple("i32" for _ in value)
            else:  # the logits' scalars are float64 (annotated), sizes i32
                signature[name] = "fp64" if isinstance(value, float) else "i32"
        return ASTSource(self.kernel, signature, constants)

    def compile(self):
        options = {key: self.kwargs[key] for key in ("num_warps", "num_stages")}
        log = io.StringIO()
        with contextlib.redirect_stdout(log):  # TRITON_DUMP_PTXAS_LOG=1 prints ptxas -v
            kernel = triton.compile(self.source(), target=GPUTarget("cuda", 90, 32), options=options)
        spills = [int(store) + int(load) for store, load in SPILLS.findall(log.getvalue())]
        registers = [int(count) for count in REGISTERS.findall(log.getvalue())]
        assert spills and registers, log.getvalue()
        return {"wgmma": "wgmma" in kernel.asm["ptx"], "spill_bytes": max(spills), "registers": max(registers)}


forward, backward = Capture(triton_fwd._forward_partials_kernel), Capture(triton_bwd._backward_kernel)
triton_fwd._forward_partials_kernel, triton_bwd._backward_kernel = forward, backward
# An H100's SMs and L2, without asking a GPU.
triton_config.device_resources = lambda device: triton_config.DeviceResources(132, 50 * 2**20)
gpu = torch.device("cuda")
ROWS = 512
LOGITS = {"none": LogitParams(64.0), "none-30": LogitParams(30.0, 1e-3),
          "filter": LogitParams(64.0, 0.0, "filter", torch.zeros(ROWS)),
          "filter-0.3": LogitParams(30.0, 1e-3, "filter", torch.full((ROWS,), 0.3)),
          "curricular": LogitParams(64.0, 0.0, "curricular", torch.zeros(ROWS), 0.1)}


def capture(dtype, weight_dtype, dim, logits_name, deterministic):
    logits = LOGITS[logits_name]
    batch, classes = ROWS, 10_572
    e_hat, weight = torch.empty(batch, dim, dtype=dtype), torch.empty(classes, dim, dtype=weight_dtype)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    w_inv_norm, rows = torch.empty(classes, dtype=acc), torch.empty(batch, dtype=acc)
    labels = torch.zeros(batch, dtype=torch.int64)
    config = triton_config.forward_config(batch, classes, dim, dtype, gpu)
    triton_fwd.launch_forward_partials(e_hat, weight, w_inv_norm, labels, logits, config)
    config = triton_config.backward_config(batch, classes, dim, dtype, gpu, deterministic)
    triton_bwd.launch_backward(e_hat, weight, w_inv_norm, labels, logits, rows, rows, config, deterministic)


request = json.loads(sys.argv[1])
for dtype_name, weight_name, tf32, dim, logits_name in request["variants"]:
    torch.backends.cuda.matmul.allow_tf32 = tf32
    dtype, weight_dtype = getattr(torch, dtype_name), getattr(torch, weight_name)
    for deterministic in (False, True):
        capture(dtype, weight_dtype, dim, logits_name, deterministic)
        kernels = {"backward deterministic=" + str(deterministic): backward.compile()}
        if not deterministic:
            kernels["forward"] = forward.compile()
            backward.kwargs["ADD_TO_D_W"] = True  # a later pass over the rows (a batch beyond L2)
            kernels["backward adding to dW"] = backward.compile()
        for name, facts in kernels.items():
            print(json.dumps(dict(variant=[dtype_name, weight_name, tf32, dim, logits_name],
                                  kernel=name, **facts)))

# The tuner's candidates (bench/tune.py), bf16 on the atomic path, the first being the default.
default = triton_config.BACKWARD_BLOCKS["half"]
for candidate in triton_config.BACKWARD_CANDIDATES["half"][1:]:
    triton_config.BACKWARD_BLOCKS["half"] = candidate
    capture(torch.bfloat16, torch.float32, 512, "none", False)
    print(json.dumps(dict(variant=["bfloat16", "float32", False, 512, "none"],
                          kernel=f"backward candidate {candidate}", **backward.compile())))
triton_config.BACKWARD_BLOCKS["half"] = default

# The cache key of a launch (its source's hash) for logits of one transform and of another.
torch.backends.cuda.matmul.allow_tf32 = False
for logits_name in LOGITS:
    capture(torch.bfloat16, torch.float32, 512, logits_name, False)
    print(json.dumps(dict(logits=logits_name, forward=forward.source().hash(), backward=backward.source().hash())))
"""

# (ê dtype, W dtype, allow_tf32, D, logits): every kind of tile product the block tables know
# (bf16/fp16, tf32, IEEE fp32, fp64), every negative transform, the dW column chunk of a small D,
# and each dtype of W (dW is stored in it).
VARIANTS = [
    ("bfloat16", "float32", False, 512, "none"),
    ("bfloat16", "float32", False, 512, "filter"),
    ("bfloat16", "float32", False, 512, "curricular"),
    ("bfloat16", "bfloat16", False, 64, "filter"),
    ("float16", "float16", False, 512, "curricular"),
    ("float32", "float32", True, 512, "curricular"),
    ("float32", "float32", False, 512, "none"),
    ("float64", "float64", False, 512, "curricular"),
]


@pytest.mark.slow  # ptxas compiles
def test_every_config_compiles_for_hopper_without_spills(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path), TRITON_DUMP_PTXAS_LOG="1")
    run = subprocess.run(
        [sys.executable, "-c", _HOPPER_COMPILE, json.dumps({"variants": VARIANTS})],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    compiled = [line for line in lines if "kernel" in line]
    assert len(compiled) == 4 * len(VARIANTS) + len(triton_config.BACKWARD_CANDIDATES["half"]) - 1
    for line in compiled:  # the table behind the figures quoted elsewhere: pytest -s shows it
        print(
            triton.__version__,
            *line["variant"],
            line["kernel"],
            f"{line['registers']} registers",
            f"{line['spill_bytes']} bytes spilled",
        )
        dtype_name, _, tf32, *_ = line["variant"]
        assert line["wgmma"] == (dtype_name in ("bfloat16", "float16") or tf32), line
    spilling = [
        f"{line['variant']} {line['kernel']}: {line['spill_bytes']} bytes" for line in compiled if line["spill_bytes"]
    ]
    assert not spilling, "register spills: " + "; ".join(spilling)

    # One compile per dtype, config and transform: the scale, the clamp and the thresholds are
    # run-time values (the same cache key whatever they are); the transform is a compile-time mode.
    keys = {line["logits"]: (line["forward"], line["backward"]) for line in lines if "logits" in line}
    assert keys["none"] == keys["none-30"] != keys["filter"]
    assert keys["filter"] == keys["filter-0.3"] != keys["curricular"]
