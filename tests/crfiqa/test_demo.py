"""The demo: seeded degraded digits, and a shortened run whose effect is real (not chance)."""

import json

import numpy as np
import pytest
import torch

from crfiqa.demo import KINDS, DemoSettings, degrade, make_digits, run_demo


def test_degradations_are_seeded_and_monotone_in_strength():
    image = np.zeros((32, 32))
    image[8:24, 12:20] = 1.0
    for kind in KINDS:
        first = degrade(image, kind, 0.7, np.random.default_rng(3))
        assert np.array_equal(first, degrade(image, kind, 0.7, np.random.default_rng(3)))
        assert first.min() >= 0.0 and first.max() <= 1.0
        changes = [np.abs(degrade(image, kind, u, np.random.default_rng(3)) - image).mean() for u in (0.0, 0.5, 1.0)]
        assert changes[0] < changes[1] < changes[2], kind
    with pytest.raises(ValueError, match="kind"):
        degrade(image, "rain", 0.5, np.random.default_rng(0))


def test_digits_split_is_disjoint_and_seeded():
    train, held_out = make_digits(16, train_copies=2, seed=4)
    again, _ = make_digits(16, train_copies=2, seed=4)
    assert torch.equal(train.images, again.images) and np.array_equal(train.strength, again.strength)
    assert not set(train.source) & set(held_out.source)
    assert len(train) == 2 * len(set(train.source)) and train.images.shape[1:] == (3, 16, 16)
    assert set(train.labels.tolist()) == set(range(10))
    assert 0.0 <= held_out.strength.min() < held_out.strength.max() <= 1.0


@pytest.mark.slow  # a training run
def test_shortened_demo_shows_a_real_effect(tmp_path, one_thread):
    # Six epochs: over seeds 0-3 ρ lies in [-0.57, -0.49]; four epochs (ρ from -0.21 to -0.37) left
    # the effect at the mercy of last-bit changes in the op's rounding.
    settings = DemoSettings(epochs=6, lr_steps=(4, 6))
    lines = []
    metrics = run_demo(str(tmp_path), settings, progress=False, echo=lines.append)
    # Predicted quality falls with degradation strength, far beyond chance.
    assert metrics["spearman"] < -0.3 and metrics["spearman_p_value"] < 1e-12
    # Discarding by predicted quality lowers the FNMR of the genuine pairs below random rejection.
    edc = metrics["edc"]
    assert edc["fnmr_at_discard_limit"]["CR-FIQA quality"] < 0.9 * edc["starting_fnmr"]
    assert edc["pauc_reduction_vs_random"] > 0.03
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["spearman"] == metrics["spearman"]
    assert (tmp_path / "edc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(line.startswith("Spearman rho(predicted quality, degradation strength)") for line in lines)


def test_demo_is_deterministic(one_thread):
    settings = DemoSettings(epochs=1, lr_steps=(1,), max_steps=12)
    first = run_demo(None, settings, progress=False, echo=lambda *_: None)
    second = run_demo(None, settings, progress=False, echo=lambda *_: None)
    assert first["spearman"] == second["spearman"] and first["edc"] == second["edc"]


def test_demo_reruns_into_the_same_folder(tmp_path, one_thread):
    settings = DemoSettings(epochs=1, lr_steps=(1,), max_steps=2)
    for _ in range(2):  # the second run replaces the first one's model in OUT/model (training would refuse it)
        metrics = run_demo(str(tmp_path), settings, progress=False, echo=lambda *_: None)
        assert metrics["training"]["steps"] == 2
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["backbone.pth", "checkpoint.pt", "train.log"]
