"""The CUDA kernels compile for sm_80 and sm_90a without register spills (no GPU needed: nvcc and
ptxas only). Every instantiation counts — each product policy of the forward and of the backward."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

NVCC = os.environ.get("CUDACXX") or shutil.which("nvcc")
CSRC = Path(__file__).resolve().parents[2] / "csrc"
KERNEL_FILES = ("forward_partials.cu", "backward.cu")
ARCHS = ("sm_80", "sm_90a")
# The flags of CMakeLists.txt that change code generation.
FLAGS = ("-std=c++17", "--expt-relaxed-constexpr", "-lineinfo", "-O3")
POLICIES = {"Tf32PolicyILb1E": "3xtf32", "Tf32PolicyILb0E": "tf32", "__nv_bfloat16": "bf16", "__half": "fp16"}

ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(sm_\w+)'")
SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
REGISTERS = re.compile(r"Used (\d+) registers")


def resource_usage(source: Path, tmp: Path) -> list[dict]:
    """One record per (kernel instantiation, architecture): registers and spill bytes, from ptxas."""
    gencode = [f"-gencode=arch=compute_{arch[3:]},code={arch}" for arch in ARCHS]
    command = [NVCC, "-c", str(source), "-o", str(tmp / f"{source.stem}.o"), *FLAGS, *gencode, "--resource-usage"]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr
    records, current = [], None
    for line in (result.stdout + result.stderr).splitlines():
        if match := ENTRY.search(line):
            kernel = next((name for key, name in POLICIES.items() if key in match.group(1)), match.group(1))
            current = {"file": source.name, "policy": kernel, "arch": match.group(2)}
            records.append(current)
        elif current is not None and (match := SPILLS.search(line)):
            current["spill_stores"], current["spill_loads"] = int(match.group(1)), int(match.group(2))
        elif current is not None and (match := REGISTERS.search(line)):
            current["registers"] = int(match.group(1))
    return records


@pytest.mark.slow
@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
def test_kernels_compile_without_register_spills(tmp_path):
    with ThreadPoolExecutor(max_workers=len(KERNEL_FILES)) as pool:
        usage = [r for records in pool.map(lambda f: resource_usage(CSRC / f, tmp_path), KERNEL_FILES) for r in records]
    table = "\n".join(
        f"{r['file']:22} {r['policy']:7} {r['arch']:7} {r.get('registers')} registers, "
        f"{r.get('spill_stores')}/{r.get('spill_loads')} bytes spilled (stores/loads)"
        for r in usage
    )
    print(table)
    for source in KERNEL_FILES:
        for arch in ARCHS:
            found = {r["policy"] for r in usage if r["file"] == source and r["arch"] == arch}
            assert found == set(POLICIES.values()), (source, arch, found)
    for record in usage:
        assert record["spill_stores"] == 0 and record["spill_loads"] == 0, table
        assert record["registers"] <= 255, table
