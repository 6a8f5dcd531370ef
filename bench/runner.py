"""Runs every selected (implementation, shape, dtype, mode) and returns one record per case.

A case that cannot run is recorded with its status and message, never dropped: ``unavailable``
(not installed, needs another device, unsupported setting), ``oom`` (out of memory, inputs
included) or ``error`` (anything else, with the exception).
"""
from __future__ import annotations

import gc
import sys
from dataclasses import dataclass

import torch

from crfiqa_kernels import Margin

from .impls import Implementation, Setting, Unavailable
from .memory import peak_extra_bytes
from .problems import DtypeSetting, make_problems
from .records import environment, make_record
from .shapes import Shape
from .timing import measure

MARGIN = Margin.arcface(64.0, 0.5)
CPU_MEMORY_METHOD = "torch.profiler allocation events (PyTorch CPU allocator), minus returned tensors"
CUDA_MEMORY_METHOD = "torch.cuda.max_memory_allocated minus inputs and returned tensors"


@dataclass(frozen=True)
class RunConfig:
    device: torch.device
    warmup: int
    repeats: int
    rotate: int = 3
    seed: int = 0
    compile_backend: str = "inductor"
    margin: Margin = MARGIN


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def failure_status(error: BaseException) -> tuple[str, str]:
    if isinstance(error, Unavailable):
        return "unavailable", str(error)
    status = "oom" if is_out_of_memory(error) else "error"
    return status, f"{type(error).__name__}: {error}".strip()[:500]


def release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_case(impl: Implementation, setting: Setting, config: RunConfig, env: dict, shape: Shape) -> dict:
    identity = dict(impl=impl.name, shape=shape, dtype=setting.dtype.name, mode=setting.mode)
    protocol = dict(warmup=config.warmup, rotate=len(setting.problems))
    try:
        step = impl.prepare(setting)
        timing = measure(step, setting.problems, config.device, warmup=config.warmup, repeats=config.repeats)
        measured = dict(
            median_ms=timing.median_ms, q25_ms=timing.q25_ms, q75_ms=timing.q75_ms, repeats=timing.repeats, **protocol
        )
        if impl.torch_memory:
            peak, outputs = peak_extra_bytes(step, setting.problems[0], config.device)
            measured["peak_extra_bytes"] = peak
            measured["memory_method"] = CUDA_MEMORY_METHOD if config.device.type == "cuda" else CPU_MEMORY_METHOD
            if impl.kind == "loss":
                measured["loss"] = float(outputs[0].detach())
            del outputs
        else:
            measured["memory_method"] = "not measured: allocates outside PyTorch"
        del step
        return make_record(env, **identity, status="ok", **measured)
    except Exception as error:  # noqa: BLE001 — every failure becomes a record
        status, message = failure_status(error)
        return make_record(env, **identity, status=status, message=message, **protocol)
    finally:
        release_memory(config.device)


def run_all(
    impls: list[Implementation],
    shapes: list[Shape],
    dtypes: list[DtypeSetting],
    modes: list[str],
    config: RunConfig,
    *,
    log=sys.stderr,
) -> list[dict]:
    env = environment(config.device)
    cases = [(s, d, m, i) for s in shapes for d in dtypes for m in modes for i in impls if m in i.modes]
    records = []
    inputs_for, problems, input_failure = None, None, None
    for number, (shape, dtype, mode, impl) in enumerate(cases, 1):
        if inputs_for != (shape, dtype):
            inputs_for, problems = (shape, dtype), None
            release_memory(config.device)
            problems, input_failure = _make_inputs(shape, dtype, config)
        if problems is None:
            status, message = input_failure
            record = make_record(env, impl=impl.name, shape=shape, dtype=dtype.name, mode=mode,
                                 status=status, message=f"inputs: {message}")
        else:
            setting = Setting(config.device, dtype, mode, config.margin, problems, config.compile_backend)
            record = run_case(impl, setting, config, env, shape)
        records.append(record)
        print(f"[{number}/{len(cases)}] {describe(record)}", file=log, flush=True)
    return records


def _make_inputs(shape: Shape, dtype: DtypeSetting, config: RunConfig):
    """``(problems, None)``, or ``(None, (status, message))`` when the inputs themselves fail (e.g. do not fit)."""
    try:
        return make_problems(shape, dtype, config.device, config.rotate, config.seed), None
    except Exception as error:  # noqa: BLE001
        return None, failure_status(error)


def describe(record: dict) -> str:
    head = f"{record['impl']} {record['shape']} {record['dtype']} {record['mode']}"
    if record["status"] != "ok":
        return f"{head}: {record['status']} ({record['message']})"
    memory = record["peak_extra_bytes"]
    memory_text = "memory not measured" if memory is None else f"{memory / 2**20:,.1f} MiB extra"
    return f"{head}: {record['median_ms']:,.2f} ms median, {memory_text}"
