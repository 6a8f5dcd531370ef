"""Nothing a user trained is lost: an occupied --output is refused or moved aside, Ctrl-C and
SIGTERM stop at a step boundary with a checkpoint, resume says where it starts, presets
checkpoint by the clock too, and stale partial files go."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from crfiqa.cli import INPUT_ERROR, build_parser, main
from crfiqa.commands.train import OVERRIDES, _loss
from crfiqa.train import Trainer, TrainingInterrupted, load_checkpoint, preset, train

from .synthetic import PrototypeDataset, write_images
from .test_train import _state_equal

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]  # training runs, some in subprocesses


def _tiny(**overrides):
    return preset("tiny", **{"epochs": 3, "batch_size": 32, "log_every": 1, "checkpoint_every": 100, **overrides})


class _SignalsAt(PrototypeDataset):
    """Sends ``signum`` to this process when item number ``at`` is read (a Ctrl-C mid-epoch)."""

    def __init__(self, at, signum, **kwargs):
        super().__init__(**kwargs)
        self.reads, self.at, self.signum = 0, at, signum

    def __getitem__(self, index):
        self.reads += 1
        if self.reads == self.at:
            os.kill(os.getpid(), self.signum)
        return super().__getitem__(index)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_at_a_step_boundary_with_a_checkpoint_and_resume_is_exact(tmp_path, signum):
    config = _tiny()
    # What the handlers were before (SIG_IGN for SIGINT when the tests run as a background job).
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    straight = train(config, PrototypeDataset(), tmp_path / "straight", progress=False)
    # Item 32 · 10 + 5 is read while loading step 11's batch: step 11 completes, then the run stops.
    with pytest.raises(TrainingInterrupted) as stop:
        train(config, _SignalsAt(32 * 10 + 5, signum), tmp_path / "cut", progress=False)
    assert (stop.value.step, stop.value.epoch, stop.value.exit_status) == (11, 1, 128 + signum)
    assert str(stop.value).startswith(f"interrupted ({signal.Signals(signum).name}) at step 11 (epoch 1)")
    assert load_checkpoint(stop.value.checkpoint)["position"] == {"step": 11, "epoch": 1, "batch_in_epoch": 3}
    assert {number: signal.getsignal(number) for number in handlers} == handlers  # handlers restored
    said = []
    resumed = train(config, PrototypeDataset(), tmp_path / "cut", resume=True, progress=False, echo=said.append)
    assert said == [f"resuming from step 11 (epoch 1, batch 3 of 8) of {tmp_path / 'cut' / 'checkpoint.pt'}"]
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    for part in ("backbone", "head", "optimizer", "scheduler", "rng", "position"):
        assert _state_equal(a[part], b[part]), part


def test_an_output_holding_a_run_is_refused_or_moved_aside(tmp_path):
    first = train(_tiny(epochs=1), PrototypeDataset(), tmp_path, progress=False)
    before = load_checkpoint(first.checkpoint)
    with pytest.raises(FileExistsError, match="holds a run .backbone.pth, checkpoint.pt.: continue it with --resume"):
        train(_tiny(epochs=1), PrototypeDataset(), tmp_path, progress=False, max_steps=2)
    assert _state_equal(load_checkpoint(first.checkpoint), before)  # untouched
    said = []
    train(_tiny(epochs=1), PrototypeDataset(), tmp_path, overwrite=True, max_steps=2, progress=False, echo=said.append)
    assert said == [f"moved the previous run into {tmp_path / 'previous-1'}"]
    assert _state_equal(load_checkpoint(tmp_path / "previous-1" / "checkpoint.pt"), before)
    assert (tmp_path / "previous-1" / "backbone.pth").is_file() and (tmp_path / "previous-1" / "train.log").is_file()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["position"]["step"] == 2


def test_checkpoints_by_the_clock_and_stale_partials_go(tmp_path, monkeypatch):
    stale = tmp_path / ".partial-999999999-x.pt"  # left by a killed save of a process that is gone
    tmp_path.mkdir(exist_ok=True)
    stale.write_bytes(b"")
    saves = []
    original = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, path, *a, **k: (saves.append(path), original(obj, path, *a, **k)))
    # checkpoint_every is beyond the run; a tiny checkpoint_minutes saves after every step.
    train(_tiny(epochs=1, checkpoint_minutes=1e-9), PrototypeDataset(), tmp_path, progress=False)
    assert len(saves) == 8 + 2  # one per step by the clock, the final checkpoint and the backbone
    assert not stale.exists()
    assert 0 < preset("crfiqa-s").checkpoint_minutes <= 10 and 0 < preset("crfiqa-l").checkpoint_minutes <= 10


def test_cli_default_preset_takes_the_datasets_identity_count(tmp_path, capsys):
    for identity in range(3):
        write_images(tmp_path / "data" / f"id{identity}", 2, size=16, seed=identity)
    # crfiqa-s says 10,572 identities (CASIA-WebFace); these data have 3, and that is what is trained.
    data = str(tmp_path / "data")
    one_step = ["--network", "iresnet18", "--batch-size", "4", "--max-steps", "1", "--workers", "0", "--no-progress"]
    assert main(["train", data, "--output", str(tmp_path / "run"), *one_step]) == 0
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["num_classes"] == 3
    assert main(["train", data, "--output", str(tmp_path / "run2"), "--num-classes", "7", *one_step]) == INPUT_ERROR
    assert "num_classes is 7 but the dataset has 3 identities" in capsys.readouterr().err


def test_loss_options_reach_the_head(tmp_path):
    for argv, family, expected in (
        (["--loss", "cosface", "--margin", "0.35"], "Margin", {"s": 30.0, "m1": 1.0, "m2": 0.0, "m3": 0.35}),
        (
            ["--loss", "elasticface-cos", "--elastic-std", "0.05", "--elastic-plus"],
            "ElasticFace",
            {"s": 30.0, "m": 0.35, "std": 0.05, "kind": "cos", "plus": True},
        ),
        (
            ["--loss", "adaface", "--adaface-h", "0.5", "--adaface-t-alpha", "0.1"],
            "AdaFace",
            {"s": 30.0, "m": 0.4, "h": 0.5, "t_alpha": 0.1},
        ),
        (
            ["--loss", "magface", "--magface-u-a", "90", "--no-magface-easy-margin"],
            "MagFace",
            {"s": 30.0, "u_a": 90.0, "easy_margin": False},
        ),
        (["--loss", "curricularface", "--margin", "0.4"], "CurricularFace", {"s": 30.0, "m": 0.4}),
    ):
        args = build_parser().parse_args(
            [
                "train",
                "data",
                "--output",
                "o",
                "--preset",
                "tiny",
                "--margin-scale",
                "30",
                "--margin-grad",
                "straight_through",
                *argv,
            ]
        )
        overrides = {name: getattr(args, name) for name in OVERRIDES if getattr(args, name) is not None}
        trainer = Trainer(preset("tiny", **overrides, **_loss(args, "arcface")), PrototypeDataset(count=64), tmp_path)
        head = trainer.head
        assert type(head.margin).__name__ == family
        assert {name: getattr(head.margin, name) for name in expected} == expected
        assert head.margin_grad == "straight_through"


def test_an_option_of_another_loss_is_an_error(tmp_path, capsys):
    data = str(tmp_path / "data")
    write_images(tmp_path / "data" / "id0", 2, size=16, seed=0)
    argv = ["train", data, "--output", str(tmp_path / "run"), "--loss", "arcface", "--adaface-h", "0.5"]
    assert main(argv) == INPUT_ERROR
    assert "--adaface-h is not an option of --loss arcface" in capsys.readouterr().err


def test_ctrl_c_on_the_command_line_is_one_line_and_exit_130(tmp_path):
    # A terminal's Ctrl-C reaches the whole process group: the loader's worker process too.
    for identity in range(2):
        write_images(tmp_path / "data" / f"id{identity}", 8, size=32, seed=identity)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [
        sys.executable,
        "-m",
        "crfiqa",
        "train",
        str(tmp_path / "data"),
        "--output",
        str(tmp_path / "run"),
        "--preset",
        "tiny",
        "--batch-size",
        "4",
        "--epochs",
        "10000",
        "--log-every",
        "1",
        "--workers",
        "1",
        "--no-progress",
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    log = tmp_path / "run" / "train.log"
    deadline = time.monotonic() + 120
    while not (log.exists() and " step 2 " in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crfiqa train: interrupted (SIGINT) at step ")
    step = int(lines[0].split("at step ")[1].split()[0])
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["position"]["step"] == step
