"""The Triton kernels compiled for an H100 (sm_90) without one: every configuration the backend may
pick lowers (the code generator checks what the interpreter skips: loop-carried types, layouts,
every op), bf16/tf32 products use wgmma, no kernel spills registers, and a new margin value
compiles nothing new.

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
from crfiqa_kernels import Margin
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
        def launch(*args, **kwargs):
            self.args, self.kwargs = args, dict(kwargs)
        return launch

    def source(self):
        signature = {}
        for name, value in zip(self.kernel.arg_names, self.args):
            if isinstance(value, torch.Tensor):
                signature[name] = "*" + POINTEE[value.dtype]
            else:  # margins are float64 scalars (annotated), sizes and strides i32
                signature[name] = "fp64" if isinstance(value, float) else "i32"
        constants = {key: value for key, value in self.kwargs.items() if key not in ("num_warps", "num_stages")}
        signature.update({name: "constexpr" for name in constants})
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
MARGINS = {"arcface": Margin.arcface(), "arcface-0.3": Margin.arcface(30.0, 0.3), "cosface": Margin.cosface(),
           "combined": Margin(32.0, 1.1, 0.3, 0.1), "combined-1.2": Margin(64.0, 1.2, 0.1, 0.0)}


def capture(dtype, weight_dtype, dim, margin, margin_grad, deterministic):
    batch, classes = 512, 10_572
    e_hat, weight = torch.empty(batch, dim, dtype=dtype), torch.empty(classes, dim, dtype=weight_dtype)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    w_inv_norm, rows = torch.empty(classes, dtype=acc), torch.empty(batch, dtype=acc)
    labels = torch.zeros(batch, dtype=torch.int64)
    config = triton_config.forward_config(batch, classes, dim, dtype, gpu)
    triton_fwd.launch_forward_partials(e_hat, weight, w_inv_norm, labels, margin, config)
    config = triton_config.backward_config(batch, classes, dim, dtype, gpu, deterministic)
    triton_bwd.launch_backward(e_hat, weight, w_inv_norm, labels, margin, rows, rows, margin_grad, config,
                               deterministic)


request = json.loads(sys.argv[1])
for dtype_name, weight_name, tf32, dim, margin_name, margin_grad in request["variants"]:
    torch.backends.cuda.matmul.allow_tf32 = tf32
    dtype, weight_dtype = getattr(torch, dtype_name), getattr(torch, weight_name)
    for deterministic in (False, True):
        capture(dtype, weight_dtype, dim, MARGINS[margin_name], margin_grad, deterministic)
        kernels = {"backward deterministic=" + str(deterministic): backward.compile()}
        if not deterministic:
            kernels["forward"] = forward.compile()
            backward.kwargs["ADD_TO_D_W"] = True  # a later pass over the rows (a batch beyond L2)
            kernels["backward adding to dW"] = backward.compile()
        for name, facts in kernels.items():
            print(json.dumps(dict(variant=[dtype_name, weight_name, tf32, dim, margin_name, margin_grad],
                                  kernel=name, **facts)))

# The tuner's candidates (bench/tune.py), bf16 on the atomic path, the first being the default.
default = triton_config.BACKWARD_BLOCKS["half"]
for candidate in triton_config.BACKWARD_CANDIDATES["half"][1:]:
    triton_config.BACKWARD_BLOCKS["half"] = candidate
    capture(torch.bfloat16, torch.float32, 512, MARGINS["arcface"], "exact", False)
    print(json.dumps(dict(variant=["bfloat16", "float32", False, 512, "arcface", "exact"],
                          kernel=f"backward candidate {candidate}", **backward.compile())))
triton_config.BACKWARD_BLOCKS["half"] = default

# The cache key of a launch (its source's hash) for margins of one kind and of another.
torch.backends.cuda.matmul.allow_tf32 = False
for margin_name in MARGINS:
    capture(torch.bfloat16, torch.float32, 512, MARGINS[margin_name], "exact", False)
    print(json.dumps(dict(margin=margin_name, forward=forward.source().hash(), backward=backward.source().hash())))
"""

# (ê dtype, W dtype, allow_tf32, D, margin, margin_grad): every kind of tile product the block
# tables know (bf16/fp16, tf32, IEEE fp32, fp64), both margin kinds, both margin gradients, the
# dW column chunk of a small D, and each dtype of W (dW is stored in it).
VARIANTS = [
    ("bfloat16", "float32", False, 512, "arcface", "exact"),
    ("bfloat16", "bfloat16", False, 64, "combined", "straight_through"),
    ("float16", "float16", False, 512, "combined", "exact"),
    ("float32", "float32", True, 512, "arcface", "exact"),
    ("float32", "float32", False, 512, "arcface", "exact"),
    ("float64", "float64", False, 512, "combined", "exact"),
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

    # One compile per dtype and config: a margin of the same kind (m1 = 1, or m1 ≠ 1) has the
    # same cache key whatever its values; the kind itself is a compile-time constant.
    keys = {line["margin"]: (line["forward"], line["backward"]) for line in lines if "margin" in line}
    assert keys["arcface"] == keys["arcface-0.3"] == keys["cosface"]
    assert keys["combined"] == keys["combined-1.2"] != keys["arcface"]
