"""Benchmark records: one JSON object per (implementation, shape, dtype, mode), with the environment.

Keys: ``device``, ``impl``, ``shape``, ``dtype``, ``mode``, ``status`` (``ok``, ``oom``,
``unavailable``, ``error``), ``message`` (why it is not ``ok``), ``median_ms`` (with ``q25_ms``,
``q75_ms``, ``repeats``, ``warmup``, ``rotate``), ``peak_extra_bytes`` (None where not measurable),
``memory_method``, ``loss`` (loss implementations), ``max_classes`` (``scale`` mode), the shape's
``batch``, ``classes``, ``dim``, ``load_average`` (the machine's 1-minute load average when the case
finished: above the thread count, other work competed for the cores), and the environment:
``commit``, ``dirty``, ``date``, ``device_name``, ``driver``, ``cuda``, ``torch``, ``triton``, ``cpu``,
``threads``, ``omp_wait_policy``.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import tempfile
from pathlib import Path

import torch

REQUIRED_KEYS = ("device", "impl", "shape", "dtype", "mode", "median_ms", "peak_extra_bytes", "commit", "date")
STATUSES = ("ok", "oom", "unavailable", "error")
REPOSITORY = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=REPOSITORY, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_driver() -> str | None:
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(device: torch.device) -> dict:
    """What a record needs to be compared with another: code, software, hardware, threads."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_model(),
        # A copy without .git (the device machine's) names its commit in CRFIQA_COMMIT.
        "commit": _git("rev-parse", "HEAD") or os.environ.get("CRFIQA_COMMIT"),
        "dirty": bool(status) if status is not None else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "driver": _nvidia_driver() if device.type == "cuda" else None,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "triton": _version("triton"),
        "cpu": _cpu_model(),
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


def make_record(env: dict, *, impl: str, shape, dtype: str, mode: str, status: str, message: str = "", **measured):
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    record = {
        **env,
        "impl": impl,
        "shape": shape.name,
        "batch": shape.batch,
        "classes": shape.classes,
        "dim": shape.dim,
        "dtype": dtype,
        "mode": mode,
        "status": status,
        "message": message,
        "median_ms": None,
        "peak_extra_bytes": None,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    record.update(measured)
    return record


def cpu_timing_record(impl: str, shape, mode: str, totals: list[float], warmup: int, *, per: int = 1, **measured):
    """An ``ok`` fp32 record on the CPU of whole repeats that took ``totals`` seconds: ``median_ms`` and,
    as ``q25_ms`` / ``q75_ms``, the fastest and slowest, in ms per item of the ``per`` each repeat
    did."""
    return make_record(
        environment(torch.device("cpu")),
        impl=impl,
        shape=shape,
        dtype="fp32",
        mode=mode,
        status="ok",
        median_ms=statistics.median(totals) / per * 1e3,
        q25_ms=min(totals) / per * 1e3,
        q75_ms=max(totals) / per * 1e3,
        repeats=len(totals),
        warmup=warmup,
        **measured,
    )


def write_json(records: list[dict], path: Path) -> None:
    """Atomically (temporary file + rename) write the records as a JSON list."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(records, out, indent=1)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def read_json(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as source:
        return json.load(source)
