"""Every bad input a user may give ends with one line ``crfiqa CMD: error: …`` naming the file
(and record or line) and exit status 2: no traceback, never torch's advice to load unsafely."""

import argparse

import numpy as np
import pytest
import torch

from crfiqa.cli import INPUT_ERROR, main
from crfiqa.data import RecordWriter, encode_jpeg, pack_image_record

from .synthetic import calibrated_backbone, write_images

pytestmark = pytest.mark.usefixtures("one_thread")


def _records(folder, labels):
    """A .rec without identity records whose images carry ``labels``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with RecordWriter(str(folder / "train.rec")) as writer:
        for key, label in enumerate(labels, start=1):
            image = encode_jpeg(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
            writer.write(key, pack_image_record(label, image))
    return folder / "train.rec"


def _backbone_missing_a_key(d):
    state = calibrated_backbone().state_dict()
    del state["layer2.0.bn1.weight"]
    torch.save(state, d / "model.pth")


def _backbone_of_other_shapes(d):
    state = calibrated_backbone().state_dict()
    state["layer2.0.bn1.weight"] = torch.ones(3)
    torch.save(state, d / "model.pth")


def _pickled_object(d):
    torch.save({"args": argparse.Namespace(a=1)}, d / "model.pth")


def _score(model):
    return lambda d: ["score", str(d / model), str(d / "faces"), "--output", str(d / "q.txt"), "--no-progress"]


def _evaluate(**files):
    def argv(d):
        paths = {"embeddings": "emb.npy", "pairs": "pairs.txt", "quality": "q.txt", **files}
        return [
            "evaluate",
            "--embeddings",
            str(d / paths["embeddings"]),
            "--pairs",
            str(d / paths["pairs"]),
            "--quality",
            str(d / paths["quality"]),
            "--output-dir",
            str(d / "eval"),
        ]

    return argv


def _train(*options):
    return lambda d: [
        "train",
        str(d / "data"),
        "--output",
        str(d / "run"),
        "--preset",
        "tiny",
        "--batch-size",
        "2",
        "--no-progress",
        *options,
    ]


CASES = {
    # name: (prepare the folder, argv, what the line must say)
    "text file as .onnx": (
        lambda d: (d / "model.onnx").write_text("not onnx"),
        _score("model.onnx"),
        "model.onnx is not a readable ONNX model",
    ),
    "text file as .pth": (
        lambda d: (d / "model.pth").write_text("not a checkpoint"),
        _score("model.pth"),
        "model.pth: it is not a PyTorch checkpoint",
    ),
    "pickled objects in .pth": (_pickled_object, _score("model.pth"), "holds Python objects besides tensors"),
    "backbone missing a key": (_backbone_missing_a_key, _score("model.pth"), "model.pth"),
    "backbone of other shapes": (_backbone_of_other_shapes, _score("model.pth"), "tensors of another shape"),
    "text file as --embeddings": (
        lambda d: (d / "emb.npy").write_text("1 2 3\n"),
        _evaluate(),
        "emb.npy is not a .npy array file",
    ),
    ".npy as --pairs": (
        lambda d: np.save(d / "pairs.npy", np.zeros((3, 2))),
        _evaluate(pairs="pairs.npy"),
        "pairs.npy is not a text file",
    ),
    "record label NaN": (
        lambda d: _records(d / "data", [0.0, float("nan"), 1.0, 0.0]),
        _train("--num-classes", "2"),
        "train.rec: record 2 has label nan",
    ),
    "record label too large": (
        lambda d: _records(d / "data", [0.0, 1.0, 5.0, 0.0]),
        _train("--num-classes", "2"),
        "train.rec: record 3 has label 5, but there are 2 identities",
    ),
    "output holds a run": (
        lambda d: (d / "run").mkdir() or (d / "run" / "checkpoint.pt").write_bytes(b"x"),
        _train(),
        "holds a run (checkpoint.pt): continue it with --resume",
    ),
    "resume without a checkpoint": (lambda d: None, _train("--resume"), "no checkpoint to resume from"),
    "sample rate on one process": (lambda d: None, _train("--sample-rate", "0.5"), "needs the sharded head"),
    "export a text file": (
        lambda d: (d / "model.pth").write_text("x"),
        lambda d: ["export-onnx", str(d / "model.pth"), str(d / "m.onnx")],
        "model.pth",
    ),
    "pack over an existing .rec": (
        lambda d: (d / "out.rec").write_text("x"),
        lambda d: ["pack", str(d / "data"), str(d / "out.rec"), "--no-progress"],
        "out.rec exists: choose another output or give --overwrite",
    ),
    "pack a list with a bad label": (
        lambda d: (d / "list.txt").write_text("faces/img_00.png one\n"),
        lambda d: ["pack", str(d / "list.txt"), str(d / "out.rec")],
        "list.txt:1: expected 'path label'",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line(tmp_path, capsys, case):
    prepare, argv, message = CASES[case]
    write_images(tmp_path / "faces", 2)
    for identity in range(2):
        write_images(tmp_path / "data" / f"id{identity}", 4, size=32, seed=identity)
    np.save(tmp_path / "emb.npy", np.ones((4, 3)))
    (tmp_path / "pairs.txt").write_text("00000 00001 1\n00002 00003 0\n")
    (tmp_path / "q.txt").write_text("".join(f"{i:05d} 0.5\n" for i in range(4)))
    prepare(tmp_path)
    argv = argv(tmp_path)
    assert main(argv) == INPUT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"crfiqa {argv[0]}: error: ") and message in err[0], err[0]
    assert "Traceback" not in err[0]
    assert "weights_only" not in err[0] and "allow_pickle" not in err[0]  # never advice to load unsafely
