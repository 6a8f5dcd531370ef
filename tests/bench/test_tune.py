"""``python -m bench.tune`` on the CPU under the interpreter: every candidate is sized for the
problem, timed round-robin and recorded; a candidate that fails is recorded with its error; the
table gives each candidate's time over the default's."""

from __future__ import annotations

import json

import pytest
import torch

from bench import tune
from bench.shapes import Shape
from crfiqa_kernels.backends import triton as triton_backend
from crfiqa_kernels.backends.triton import config as triton_config

SMALL = Shape("small", 20, 100, 32, "a CPU-sized problem")
CANDIDATES = (
    triton_config.BackwardConfig(16, 16, 16, 32, splits=1),
    triton_config.BackwardConfig(16, 32, 16, 32, splits=1),
    triton_config.BackwardConfig(32, 16, 16, 32, splits=1),  # made to fail below
)


@pytest.fixture
def failing_tall_tiles(monkeypatch):
    original = triton_backend.backward

    def backward(*args, config, **kwargs):
        if config.block_b == 32:
            raise RuntimeError("out of resources: shared memory (made up by the test)")
        return original(*args, config=config, **kwargs)

    monkeypatch.setattr(triton_backend, "backward", backward)


def test_every_candidate_is_timed_or_recorded_with_its_error(failing_tall_tiles):
    if not triton_backend.available("cpu"):
        pytest.skip("needs the Triton interpreter (tests/conftest.py sets it up without a GPU)")
    records = tune.tune([SMALL], torch.device("cpu"), repeats=2, candidates=CANDIDATES)
    assert [record["impl"] for record in records] == [tune.describe(candidate) for candidate in CANDIDATES]
    ok, failed = records[:2], records[2]
    for record, candidate in zip(ok, CANDIDATES, strict=False):
        assert record["status"] == "ok" and record["median_ms"] > 0 and record["repeats"] == 2
        assert record["mode"] == "backward" and record["dtype"] == "bf16" and record["shape"] == "small"
        # Sized for the problem like the default: the candidate's blocks, the backend's programs.
        assert record["config"]["block_c"] == candidate.block_c and record["config"]["splits"] >= 1
        assert record["commit"] is not None and record["date"]
    assert failed["status"] == "error" and failed["median_ms"] is None
    assert failed["message"].startswith("RuntimeError: out of resources")

    text = tune.table(records)
    rows = [line for line in text.splitlines() if line.startswith("| small")]
    assert rows[0].endswith("| 1.00× |")
    assert float(rows[1].split("|")[3]) == pytest.approx(records[1]["median_ms"], abs=1e-3)
    assert "error: RuntimeError: out of resources" in rows[2]


def test_command_line_writes_both_files_and_refuses_bad_options(tmp_path, monkeypatch, capsys):
    if not triton_backend.available("cpu"):
        pytest.skip("needs the Triton interpreter (tests/conftest.py sets it up without a GPU)")
    monkeypatch.setitem(triton_config.BACKWARD_CANDIDATES, "half", CANDIDATES[:1])
    monkeypatch.setattr(tune, "get_shape", lambda name: SMALL)
    assert tune.main(["--shapes", "small", "--repeats", "1", "--device", "cpu", "--out", str(tmp_path)]) == 0
    records = json.loads((tmp_path / "tune.json").read_text())
    assert len(records) == 1 and records[0]["status"] == "ok"
    assert "| small |" in (tmp_path / "tune.md").read_text()
    for bad, message in ((["--repeats", "0"], "--repeats"), (["--device", "meta"], "--device meta")):
        with pytest.raises(SystemExit) as caught:
            tune.main([*bad, "--out", str(tmp_path)])
        assert caught.value.code == 2
        assert message in capsys.readouterr().err
