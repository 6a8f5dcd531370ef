"""The device call's script on a CPU machine: its dry run, its step table, its time budget, its outputs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the GPU script's dry run in subprocesses

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "gpu" / "run_on_device.sh"
STEPS = ("env", "build", "peers", "gpu-tests", "bench-bf16", "tune", "bench-fp32", "bench-shard", "sanitizer", "scale")


def _run(*args, timeout=300, **env):
    command = ["bash", str(SCRIPT), *args]
    environment = {**os.environ, "PYTHON": sys.executable, **env}
    return subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, check=False, timeout=timeout
    )


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    no_wheels = tmp_path_factory.mktemp("no-wheels")
    return _run("--dry-run", PEER_WHEELS=str(no_wheels))


def test_dry_run_passes_and_prints_every_step_with_its_limit(dry_run):
    assert dry_run.returncode == 0, dry_run.stdout[-3000:] + dry_run.stderr[-2000:]
    table = dict(re.findall(r"^(\S+)\s+(\d+)\s+\d+\s", dry_run.stdout, flags=re.MULTILINE))
    assert tuple(table) == STEPS
    # The first five steps always get their whole limit inside the 480 s budget (10 s kept back).
    assert sum(int(table[name]) for name in STEPS[:5]) <= 480 - 10
    assert "the run stops at 480 s" in dry_run.stdout
    assert "dry run: ready" in dry_run.stdout


def test_dry_run_says_what_is_optional(dry_run):
    out = dry_run.stdout
    assert "liger and cut_cross_entropy will be recorded as not installed" in out
    assert re.search(r"^(ok|absent)\s+faiss", out, flags=re.MULTILINE)
    assert "ok      preset gpu-short" in out
    assert "ok      bench.tune" in out
    assert re.search(r"ok      gpu-tests selection: .* → \d+", out)


def test_dry_run_fails_on_a_missing_package_and_a_bad_wheel(tmp_path):
    hidden, wheels = tmp_path / "hidden", tmp_path / "wheels"
    hidden.mkdir()
    wheels.mkdir()
    (hidden / "hypothesis.py").write_text("raise ImportError('hidden by the test')\n")
    (wheels / "liger_kernel-0.1-cp311-cp311-linux_x86_64.whl").write_bytes(b"not a wheel")
    result = _run("--dry-run", PYTHONPATH=str(hidden), PEER_WHEELS=str(wheels))
    assert result.returncode != 0
    assert "MISSING hypothesis (ImportError: hidden by the test)" in result.stdout
    assert "BAD     liger_kernel-0.1-cp311" in result.stdout
    assert "cut_cross_entropy wheel: that peer will be recorded as not installed" in result.stdout
    assert "NOT READY" in result.stdout


def test_steps_beyond_the_budget_are_skipped_and_recorded(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    result = _run("bench-shard", "scale", OUT=str(out), GPU_RUN_WORK=str(work), GPU_RUN_BUDGET="30", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()]
    assert [row[0] for row in rows] == ["bench-shard", "scale"]
    assert all(row[1].startswith("skipped: ") for row in rows)
    files = sorted(path.name for path in out.iterdir())
    assert files == ["run.tar.gz", "steps.tsv", "summary.md"]  # at most 8 files come back
    # 30 s of budget less the 10 s reserve, less the whole seconds the clock ticked since the start
    # (a second boundary may fall between the two steps).
    left = re.search(r"\| scale \| skipped: (\d+)s left, needs 40s \|", (out / "summary.md").read_text())
    assert left is not None and 15 <= int(left.group(1)) <= 20


def test_unknown_step_is_one_line(tmp_path):
    result = _run("nope", OUT=str(tmp_path), timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "unknown step: nope" in result.stderr
