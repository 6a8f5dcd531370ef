"""The crfiqa command: its subcommands end to end, and one-line errors for bad inputs."""

import numpy as np
import pytest
import torch

from crfiqa.cli import INPUT_ERROR, main

from .synthetic import calibrated_backbone, write_images

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def backbone(tmp_path):
    torch.save(calibrated_backbone().state_dict(), tmp_path / "backbone.pth")
    return str(tmp_path / "backbone.pth")


def _error_line(capsys, command):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith(f"crfiqa {command}: error: ")
    return err[-1]


def test_score_writes_path_score_lines_and_embeddings(tmp_path, backbone, capsys):
    write_images(tmp_path / "faces", 3)
    code = main(
        [
            "score",
            backbone,
            str(tmp_path / "faces"),
            "--output",
            str(tmp_path / "q.txt"),
            "--embeddings",
            str(tmp_path / "e.npy"),
            "--no-progress",
        ]
    )
    assert code == 0 and "scored 3 image(s)" in capsys.readouterr().out
    lines = (tmp_path / "q.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["img_00.png", "img_01.png", "img_02.png"]
    assert np.load(tmp_path / "e.npy").shape == (3, 16)


def test_missing_paths(tmp_path, backbone, capsys):
    write_images(tmp_path / "faces", 1)
    out = str(tmp_path / "q.txt")
    assert main(["score", str(tmp_path / "nope.pth"), str(tmp_path / "faces"), "--output", out]) == INPUT_ERROR
    assert "nope.pth" in _error_line(capsys, "score")
    assert main(["score", backbone, str(tmp_path / "nowhere"), "--output", out]) == INPUT_ERROR
    assert "nowhere" in _error_line(capsys, "score")
    assert main(["train", str(tmp_path / "no_data"), "--output", str(tmp_path / "run")]) == INPUT_ERROR
    assert "no_data" in _error_line(capsys, "train")
    assert main(["export-onnx", str(tmp_path / "nope.pth"), str(tmp_path / "m.onnx")]) == INPUT_ERROR
    assert "nope.pth" in _error_line(capsys, "export-onnx")


def test_empty_folders(tmp_path, backbone, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["score", backbone, str(tmp_path / "empty"), "--output", str(tmp_path / "q.txt")]) == INPUT_ERROR
    assert "no images found" in _error_line(capsys, "score")
    assert main(["train", str(tmp_path / "empty"), "--output", str(tmp_path / "run")]) == INPUT_ERROR
    assert "no images found" in _error_line(capsys, "train")
    assert not (tmp_path / "q.txt").exists()


def test_unreadable_images(tmp_path, backbone, capsys):
    write_images(tmp_path / "mixed", 2)
    (tmp_path / "mixed" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert main(["score", backbone, str(tmp_path / "mixed"), "--output", str(tmp_path / "q.txt"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 unreadable" in captured.err and "zz_broken.png" in captured.err
    assert len((tmp_path / "q.txt").read_text().splitlines()) == 2

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"junk")
    assert (
        main(["score", backbone, str(tmp_path / "bad"), "--output", str(tmp_path / "b.txt"), "--no-progress"])
        == INPUT_ERROR
    )
    assert "none of the 1 images" in _error_line(capsys, "score")


def test_train_then_export_and_score_with_onnx(tmp_path, capsys):
    pytest.importorskip("onnx")  # optional packages (the wrapper extra): skip cleanly without them
    pytest.importorskip("onnxruntime")
    for identity in range(3):
        write_images(tmp_path / "data" / f"id{identity}", 8, size=32, seed=identity)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(tmp_path / "data"),
                "--output",
                str(run),
                "--preset",
                "tiny",
                "--batch-size",
                "8",
                "--epochs",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "trained to step 3" in capsys.readouterr().out
    assert main(["export-onnx", str(run / "backbone.pth"), str(tmp_path / "m.onnx")]) == 0
    difference = float(capsys.readouterr().out.rsplit(" ", 1)[1])
    assert difference < 1e-4
    for model, name in ((run / "backbone.pth", "torch.txt"), (tmp_path / "m.onnx", "onnx.txt")):
        assert (
            main(["score", str(model), str(tmp_path / "data"), "--output", str(tmp_path / name), "--no-progress"]) == 0
        )
    torch_lines = (tmp_path / "torch.txt").read_text().split()
    onnx_lines = (tmp_path / "onnx.txt").read_text().split()
    assert torch_lines[::2] == onnx_lines[::2]
    np.testing.assert_allclose(np.float64(onnx_lines[1::2]), np.float64(torch_lines[1::2]), atol=1e-4)


def test_evaluate_is_a_subcommand(tmp_path, capsys):
    code = main(
        [
            "evaluate",
            "--embeddings",
            str(tmp_path / "e.npy"),
            "--pairs",
            str(tmp_path / "p.txt"),
            "--quality",
            str(tmp_path / "q.txt"),
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert code == INPUT_ERROR
    assert "e.npy" in capsys.readouterr().err


def test_embeddings_keep_the_given_file_name(tmp_path, backbone, capsys):
    write_images(tmp_path / "faces", 2)
    assert (
        main(
            [
                "score",
                backbone,
                str(tmp_path / "faces"),
                "--output",
                str(tmp_path / "out" / "q.txt"),
                "--embeddings",
                str(tmp_path / "out" / "emb.bin"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["emb.bin", "q.txt"]
    assert np.load(tmp_path / "out" / "emb.bin").shape == (2, 16)
