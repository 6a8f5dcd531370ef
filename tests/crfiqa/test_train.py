"""Training: the loss falls, exact resume, atomic checkpoints, the recipe's schedule and options."""

import io
import os
import pickle
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import crfiqa_kernels.heads
from crfiqa.data import RecordDataset, write_record_dataset
from crfiqa.models import load_backbone
from crfiqa.train import PRESETS, Trainer, load_checkpoint, preset, save_atomic, train
from crfiqa_kernels import cr_target

from .synthetic import PrototypeDataset

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]  # training runs


def _tiny(**overrides):
    return preset("tiny", **{"epochs": 3, "batch_size": 32, "log_every": 1, **overrides})


def test_short_cpu_training_run_loss_falls(tmp_path):
    result = train(_tiny(), PrototypeDataset(), tmp_path, progress=False)
    assert (result.step, result.epoch) == (24, 3)
    losses = [entry["loss"] for entry in result.history]
    assert len(losses) == 24 and all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])
    assert np.mean([e["mean_cr"] for e in result.history[-4:]]) > np.mean([e["mean_cr"] for e in result.history[:4]])
    log = (tmp_path / "train.log").read_text()
    assert "step 24 loss=" in log and "images_per_s=" in log
    model = load_backbone(result.backbone)
    embedding, quality = model(torch.zeros(2, 3, 32, 32))
    assert embedding.shape == (2, 64) and quality.shape == (2,)


def _state_equal(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_state_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_state_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_resume_equals_an_uninterrupted_run(tmp_path):
    # 8 steps per epoch; the run is cut at step 11, in the middle of the second epoch.
    config = _tiny(checkpoint_every=4)
    straight = train(config, PrototypeDataset(), tmp_path / "straight", progress=False)
    cut = train(config, PrototypeDataset(), tmp_path / "resumed", progress=False, max_steps=11)
    assert load_checkpoint(cut.checkpoint)["position"] == {"step": 11, "epoch": 1, "batch_in_epoch": 3}
    resumed = train(config, PrototypeDataset(), tmp_path / "resumed", progress=False, resume=True)
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    for part in ("backbone", "head", "optimizer", "scheduler", "rng", "position"):
        assert _state_equal(a[part], b[part]), part
    assert [e["loss"] for e in straight.history[11:]] == [e["loss"] for e in resumed.history]


@pytest.mark.parametrize(
    ("loss", "buffers"),
    [("adaface", ("batch_mean", "batch_std")), ("curricularface", ("t",)), ("elasticface-arc", ())],
)
def test_resume_restores_the_familys_running_state(tmp_path, loss, buffers):
    # One epoch of 8 steps, cut at step 5: the family's buffers (and ElasticFace's draws, from the
    # restored generator) continue bit-exactly.
    config = _tiny(epochs=1, loss=loss, loss_options={"s": 16.0})
    straight = train(config, PrototypeDataset(), tmp_path / "straight", progress=False)
    train(config, PrototypeDataset(), tmp_path / "resumed", progress=False, max_steps=5)
    resumed = train(config, PrototypeDataset(), tmp_path / "resumed", progress=False, resume=True)
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    assert {f"margin.{name}" for name in buffers} <= set(a["head"])
    assert _state_equal(a["head"], b["head"]) and _state_equal(a["backbone"], b["backbone"])
    assert [e["loss"] for e in straight.history[5:]] == [e["loss"] for e in resumed.history]
    initial = {"batch_mean": 20.0, "batch_std": 100.0, "t": 0.0}  # the families' starting values
    assert all(float(a["head"][f"margin.{name}"]) != initial[name] for name in buffers)
    assert f"loss {loss} s=16.0" in (tmp_path / "straight" / "train.log").read_text()


def test_checkpoints_of_the_combined_margin_config_resume(tmp_path):
    train(_tiny(loss="cosface"), PrototypeDataset(), tmp_path, progress=False, max_steps=2)
    path = tmp_path / "checkpoint.pt"
    state = load_checkpoint(path)
    config = {k: v for k, v in state["config"].items() if k not in ("loss", "loss_options")}
    state["config"] = {**config, "margin_s": 64.0, "margin_m1": 1.0, "margin_m2": 0.0, "margin_m3": 0.35}
    save_atomic(state, path)
    resumed = train(_tiny(loss="cosface"), PrototypeDataset(), tmp_path, progress=False, resume=True, max_steps=3)
    assert resumed.step == 3
    state["config"]["margin_m2"] = 0.2
    save_atomic(state, path)
    with pytest.raises(ValueError, match="combined margin"):
        train(_tiny(loss="cosface"), PrototypeDataset(), tmp_path, progress=False, resume=True, max_steps=4)


def test_resume_refuses_changed_options_and_missing_checkpoints(tmp_path):
    train(_tiny(), PrototypeDataset(), tmp_path, progress=False, max_steps=2)
    with pytest.raises(ValueError, match="base_lr"):
        train(_tiny(base_lr=0.5), PrototypeDataset(), tmp_path, progress=False, resume=True)
    assert train(_tiny(epochs=4), PrototypeDataset(), tmp_path, progress=False, resume=True, max_steps=3).step == 3
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(_tiny(), PrototypeDataset(), tmp_path / "fresh", progress=False, resume=True)


class _Opaque:
    pass


def test_checkpoints_are_atomic_and_weights_only(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_atomic({"step": 1, "weights": torch.ones(3)}, path)
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        save_atomic({"step": 2, "broken": lambda: None}, path)  # a lambda cannot be pickled: fails while writing
    assert load_checkpoint(path)["step"] == 1  # the old file is intact
    assert os.listdir(tmp_path) == ["checkpoint.pt"]  # and no temporary file is left
    torch.save({"object": _Opaque()}, tmp_path / "unsafe.pt")
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_checkpoint(tmp_path / "unsafe.pt")


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_lr_schedule_is_the_authors_step_function(tmp_path):
    steps = [2, 4]
    trainer = Trainer(_tiny(epochs=5, lr_steps=steps, base_lr=0.1), PrototypeDataset(count=64), tmp_path)
    initial = 0.1 * 32 / 512  # lr 0.1 × global batch / 512
    for epoch in range(5):
        # the authors' lr_step_func: 0.1 ** len([m for m in steps if m - 1 <= epoch])
        expected = initial * 0.1 ** len([m for m in steps if m - 1 <= epoch])
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(expected)
        assert trainer.optimizer.param_groups[1]["lr"] == pytest.approx(expected)
        trainer.scheduler.step()
    assert trainer.optimizer.defaults["momentum"] == 0.9 and trainer.optimizer.defaults["weight_decay"] == 5e-4


def test_presets_follow_the_recipe():
    small, large = PRESETS["crfiqa-s"], PRESETS["crfiqa-l"]
    assert (small.depths, small.num_classes, small.epochs, small.lr_steps) == ([3, 4, 14, 3], 10572, 34, [20, 28, 32])
    assert (large.depths, large.num_classes, large.epochs, large.lr_steps) == (
        [3, 13, 30, 3],
        85742,
        18,
        [8, 14, 20, 25],
    )
    for config in (small, large):
        assert (config.base_lr, config.clip_norm, config.dropout) == (0.1, 5.0, 0.4)
        assert (config.alpha, config.beta, config.cr) == (10.0, 0.5, "paper")
        assert (config.loss, config.loss_options) == ("arcface", {})
        assert (config.image_size, config.embedding_size) == (112, 512)
    with pytest.raises(ValueError, match="num_classes"):
        Trainer(small, PrototypeDataset(count=64), "unused")


# fp16: the grad scaler skips the first steps while it lowers its scale (PyTorch warns about the schedule).
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_steps_stay_finite(tmp_path, amp):
    result = train(_tiny(amp=amp, epochs=1), PrototypeDataset(count=96), tmp_path, progress=False)
    assert result.step == 3 and all(np.isfinite(e["loss"]) for e in result.history)


def test_cr_formula_is_selectable(tmp_path, monkeypatch):
    """The option reaches the loss: the training step regresses the chosen formula's CR, and from the
    same seed the two formulas see the same first forward but train towards different targets."""
    targets = []

    def recording_cr_target(ccs, nnccs, formula="paper", **kwargs):
        target = cr_target(ccs, nnccs, formula, **kwargs)
        targets.append((formula, ccs, nnccs, target))
        return target

    monkeypatch.setattr(crfiqa_kernels.heads, "cr_target", recording_cr_target)
    runs = {}
    for formula in ("official", "paper"):
        targets.clear()
        result = train(_tiny(cr=formula, epochs=1), PrototypeDataset(count=64), tmp_path / formula, progress=False)
        assert load_checkpoint(result.checkpoint)["config"]["cr"] == formula
        assert len(targets) == result.step == 2 and {call[0] for call in targets} == {formula}
        for entry, (_, ccs, nnccs, target) in zip(result.history, targets, strict=True):
            # All rows are labelled: mean_cr is the mean of the formula's CR over the batch.
            expected = ccs / nnccs.clamp(min=-1e-12) if formula == "official" else ccs / (nnccs + 1 + 1e-9)
            torch.testing.assert_close(target, expected)
            assert entry["mean_cr"] == pytest.approx(float(target.mean()), rel=1e-5)
        runs[formula] = result.history
    assert runs["official"][0]["ce"] == runs["paper"][0]["ce"]
    assert runs["official"][0]["mean_cr"] != pytest.approx(runs["paper"][0]["mean_cr"], rel=1e-3)
    assert runs["official"][0]["quality"] != pytest.approx(runs["paper"][0]["quality"], rel=1e-3)


def test_tensorboard_is_optional_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(ImportError, match="pip install tensorboard"):
        train(_tiny(tensorboard=True), PrototypeDataset(count=64), tmp_path, progress=False)


def test_corrupt_records_do_not_end_a_run(tmp_path):
    rng = np.random.default_rng(0)
    samples = []
    for index in range(40):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, format="PNG")
        samples.append((buffer.getvalue(), index % 4))
    samples[5] = (b"\x89PNG garbage", samples[5][1])
    write_record_dataset(tmp_path / "data", samples)
    result = train(
        _tiny(epochs=2, batch_size=8), RecordDataset(tmp_path / "data", 32), tmp_path / "run", progress=False
    )
    assert result.step == 10 and result.skipped == 2  # the bad record, once per epoch
    assert "skipped 2 unreadable item(s)" in (tmp_path / "run" / "train.log").read_text()
