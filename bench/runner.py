"""Runs every selected (implementation, shape, dtype, mode) and returns one record per case.

Cases are run by (shape, dtype, mode) group: each implementation is prepared and warmed up, then
all are timed round-robin (:mod:`.timing`), then the peak memory of each is measured in a call of
its own. A case that cannot run is recorded with its status and message, never dropped:
``unavailable`` (not installed, needs another device, unsupported setting), ``oom`` (out of
memory, inputs included) or ``error`` (anything else, with the exception).
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
from .timing import round_robin

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


def _prepare(impl: Implementation, setting: Setting, warmup: int):
    """The warmed-up step (compilation and autotuning happen here), or the failure."""
    try:
        step = impl.prepare(setting)
        for index in range(warmup):
            step(setting.problems[index % len(setting.problems)])
        return step, None
    except Exception as error:  # noqa: BLE001 — every failure becomes a record
        release_memory(setting.device)
        return None, error


def _memory(impl: Implementation, step, setting: Setting) -> dict:
    if not impl.torch_memory:
        return {"memory_method": "not measured: allocates outside PyTorch"}
    peak, outputs = peak_extra_bytes(step, setting.problems[0], setting.device)
    measured = {
        "peak_extra_bytes": peak,
        "memory_method": CUDA_MEMORY_METHOD if setting.device.type == "cuda" else CPU_MEMORY_METHOD,
    }
    if impl.kind == "loss":
        measured["loss"] = float(outputs[0].detach())
    return measured


def run_group(impls: list[Implementation], setting: Setting, shape: Shape, config: RunConfig, env: dict) -> list[dict]:
    """One record per implementation for one (shape, dtype, mode)."""
    protocol = dict(warmup=config.warmup, rotate=len(setting.problems))
    steps, failures = {}, {}
    for impl in impls:
        steps[impl.name], failures[impl.name] = _prepare(impl, setting, config.warmup)
    timings, timing_failures = round_robin(
        {name: step for name, step in steps.items() if step is not None},
        setting.problems,
        config.device,
        config.repeats,
    )
    failures.update(timing_failures)
    records = []
    for impl in impls:
        identity = dict(impl=impl.name, shape=shape, dtype=setting.dtype.name, mode=setting.mode, **protocol)
        error = failures.get(impl.name)
        if error is None:
            timing = timings[impl.name]
            release_memory(config.device)  # what earlier steps left (cycles, cached blocks) is not a baseline
            try:
                measured = _memory(impl, steps[impl.name], setting)
            except Exception as memory_error:  # noqa: BLE001
                error = memory_error
        if error is not None:
            status, message = failure_status(error)
            records.append(make_record(env, **identity, status=status, message=message))
        else:
            records.append(
                make_record(
                    env,
                    **identity,
                    status="ok",
                    median_ms=timing.median_ms,
                    q25_ms=timing.q25_ms,
                    q75_ms=timing.q75_ms,
                    repeats=timing.repeats,
                    **measured,
                )
            )
        steps[impl.name] = None  # frees what the step holds (compiled code, casted weights, indexes)
    return records


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
    records = []
    for shape in shapes:
        for dtype in dtypes:
            release_memory(config.device)
            problems, input_failure = _make_inputs(shape, dtype, config)
            for mode in modes:
                group = [impl for impl in impls if mode in impl.modes]
                if problems is None:
                    status, message = input_failure
                    new = [
                        make_record(
                            env,
                            impl=impl.name,
                            shape=shape,
                            dtype=dtype.name,
                            mode=mode,
                            status=status,
                            message=f"inputs: {message}",
                        )
                        for impl in group
                    ]
                else:
                    setting = Setting(config.device, dtype, mode, config.margin, problems, config.compile_backend)
                    new = run_group(group, setting, shape, config, env)
                for record in new:
                    if log is not None:
                        print(f"[{len(records) + 1}] {describe(record)}", file=log, flush=True)
                    records.append(record)
            problems = None
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
