"""The 0–100 scale: OFIQ's logistic fitted to a reference's p5 / p95, monotone, refused for another
model or a reference it cannot fit; ``crfiqa calibrate`` and ``crfiqa score --calibration``."""

import json
import math

import numpy as np
import pytest
import torch

from crfiqa.calibration import MIN_REFERENCE, fit_calibration, load_calibration, save_calibration
from crfiqa.cli import main
from crfiqa.formats import read_quality_scores

from .synthetic import calibrated_backbone, write_images


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"weights of one model")
    return path


def test_p5_and_p95_map_to_10_and_90(model_file):
    raw = np.random.default_rng(0).normal(-20.0, 3.0, 1000)  # raw scores of any range (ONNX models: near −20)
    calibration = fit_calibration(raw, model_file)
    p5, p95 = np.percentile(raw, [5, 95])
    assert calibration(np.array([p5, p95])).tolist() == [10, 90]
    assert calibration(np.array([(p5 + p95) / 2])).tolist() == [50]
    # Hand-worked: Q(x0 + w · ln 4) = 100 / (1 + 1/4) = 80; far out it saturates at 0 and 100.
    assert calibration(np.array([calibration.x0 + calibration.w * math.log(4)])).tolist() == [80]
    assert calibration(np.array([-1e6, 1e6])).tolist() == [0, 100]


def test_the_scale_is_monotone(model_file):
    calibration = fit_calibration(np.linspace(0.0, 2.0, 50), model_file)
    values = calibration(np.linspace(-10, 10, 10001))
    assert values.dtype.kind == "i" and (np.diff(values) >= 0).all() and values[0] == 0 and values[-1] == 100


def test_another_model_is_refused(model_file, tmp_path):
    calibration = fit_calibration(np.linspace(0.0, 2.0, 50), model_file)
    save_calibration(tmp_path / "c.json", calibration)
    loaded = load_calibration(tmp_path / "c.json")
    assert loaded == calibration
    loaded.check_model(model_file, "c.json")
    other = tmp_path / "other.pth"
    other.write_bytes(b"weights of another model")
    with pytest.raises(ValueError, match="fitted for another model"):
        loaded.check_model(other, "c.json")


def test_a_small_or_uniform_reference_is_refused(model_file, tmp_path):
    with pytest.raises(ValueError, match="too small"):
        fit_calibration(np.arange(MIN_REFERENCE - 1, dtype=float), model_file)
    with pytest.raises(ValueError, match="too uniform"):
        fit_calibration(np.r_[np.zeros(95), np.arange(5.0)], model_file)  # p5 = p95 = 0
    (tmp_path / "bad.json").write_text(json.dumps({"format": "crfiqa-calibration", "x0": 1}))
    with pytest.raises(ValueError, match="fields"):
        load_calibration(tmp_path / "bad.json")


def test_calibrate_then_score_adds_the_0_100_column(tmp_path, capsys):
    model = tmp_path / "backbone.pth"
    torch.save(calibrated_backbone().state_dict(), model)
    write_images(tmp_path / "reference", 40)
    calibration = tmp_path / "calibration.json"
    assert (
        main(["calibrate", str(model), str(tmp_path / "reference"), "--output", str(calibration), "--no-progress"]) == 0
    )
    scores = tmp_path / "scores.txt"
    command = ["score", str(model), str(tmp_path / "reference"), "--output", str(scores), "--no-progress"]
    assert main([*command, "--calibration", str(calibration)]) == 0
    lines = [line.split() for line in scores.read_text().splitlines()]
    raw = np.array([float(fields[1]) for fields in lines])
    quality = np.array([int(fields[2]) for fields in lines])
    order = np.argsort(raw)
    assert (np.diff(quality[order]) >= 0).all() and 0 <= quality.min() and quality.max() <= 100
    assert (quality <= 10).mean() == pytest.approx(0.05, abs=0.03)  # p5 → 10: about 5 % at or below
    assert read_quality_scores(scores) == {fields[0]: float(fields[1]) for fields in lines}  # evaluate reads raw

    other = tmp_path / "other.pth"
    torch.save(calibrated_backbone(seed=1).state_dict(), other)
    capsys.readouterr()
    assert main(["score", str(other), *command[2:], "--calibration", str(calibration)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "fitted for another model" in error
