"""``crfiqa score`` writes names that ``crfiqa evaluate`` joins, for every input layout: identity
folders with repeated file names, a ``.rec``, a file list; bare file names where unique."""

import itertools
import json

import pytest
import torch

from crfiqa.cli import INPUT_ERROR, main

from .synthetic import calibrated_backbone, write_images

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def faces(tmp_path):
    """3 identity folders of 4 images each, every folder with the same file names img_00 … img_03."""
    torch.save(calibrated_backbone().state_dict(), tmp_path / "backbone.pth")
    for identity in range(3):
        write_images(tmp_path / "faces" / f"id_{identity:02d}", 4, seed=identity)
    return tmp_path


def _pairs(names, identity_of):
    return "".join(f"{a} {b} {int(identity_of(a) == identity_of(b))}\n" for a, b in itertools.combinations(names, 2))


def _score_then_evaluate(d, images, pairs_text, capsys):
    assert (
        main(
            [
                "score",
                str(d / "backbone.pth"),
                str(images),
                "--output",
                str(d / "scores.txt"),
                "--embeddings",
                str(d / "emb.npy"),
                "--no-progress",
            ]
        )
        == 0
    )
    names = [line.rsplit(" ", 1)[0] for line in (d / "scores.txt").read_text().splitlines()]
    (d / "pairs.txt").write_text(pairs_text(names))
    capsys.readouterr()
    code = main(
        [
            "evaluate",
            "--embeddings",
            str(d / "emb.npy"),
            "--names",
            str(d / "scores.txt"),
            "--pairs",
            str(d / "pairs.txt"),
            "--quality",
            f"crfiqa={d / 'scores.txt'}",
            "--output-dir",
            str(d / "eval"),
        ]
    )
    captured = capsys.readouterr()
    return code, names, captured


def _check(d, names, captured, code):
    assert code == 0, captured.err
    results = json.loads((d / "eval" / "evaluation.json").read_text())
    assert results["pair_count"] == len(names) * (len(names) - 1) // 2 and results["mated_count"] == 3 * 6
    # 48 non-mated pairs cannot resolve FMR 1e-3: one warning line says how many are needed.
    assert "needs at least 1,000 non-mated pairs to be resolved; there are 48" in captured.err


def test_identity_folders_with_repeated_file_names(faces, capsys):
    code, names, captured = _score_then_evaluate(faces, faces / "faces", lambda n: _pairs(n, lambda a: a[:5]), capsys)
    assert names[:2] == ["id_00/img_00.png", "id_00/img_01.png"] and len(names) == 12
    _check(faces, names, captured, code)


def test_rec_file(faces, capsys):
    assert main(["pack", str(faces / "faces"), str(faces / "data.rec"), "--no-progress"]) == 0
    identity = {f"data.rec:{key}": (key - 1) // 4 for key in range(1, 13)}
    code, names, captured = _score_then_evaluate(faces, faces / "data.rec", lambda n: _pairs(n, identity.get), capsys)
    assert names == list(identity)
    _check(faces, names, captured, code)


def test_file_list(faces, capsys):
    lines = [f"faces/id_{i:02d}/img_{j:02d}.png" for i in range(3) for j in range(4)]
    (faces / "list.txt").write_text("\n".join(lines) + "\n")
    code, names, captured = _score_then_evaluate(
        faces, faces / "list.txt", lambda n: _pairs(n, lambda a: a[:11]), capsys
    )
    assert names == lines
    _check(faces, names, captured, code)


def test_bare_file_names_join_where_unique_and_name_the_clash_where_not(faces, capsys):
    code, _, _ = _score_then_evaluate(faces, faces / "faces", lambda n: _pairs(n, lambda a: a[:5]), capsys)
    assert code == 0
    evaluate = [
        "evaluate",
        "--embeddings",
        str(faces / "emb.npy"),
        "--names",
        str(faces / "scores.txt"),
        "--pairs",
        str(faces / "pairs.txt"),
        "--quality",
        str(faces / "scores.txt"),
        "--output-dir",
        str(faces / "eval2"),
    ]
    (faces / "pairs.txt").write_text("img_00 id_01/img_01.png 0\nid_00/img_00.png id_00/img_01.png 1\n")
    assert main(evaluate) == INPUT_ERROR
    err = capsys.readouterr().err.strip()
    assert err == (
        f"crfiqa evaluate: error: {faces / 'pairs.txt'}: 'img_00' matches 3 names in {faces / 'scores.txt'} "
        f"('id_00/img_00.png', 'id_01/img_00.png', 'id_02/img_00.png'); write the full name as "
        f"{faces / 'scores.txt'} has it"
    )
    # One folder: the authors' bare keys (file name without folder and extension) are unique and join.
    assert (
        main(
            [
                "score",
                str(faces / "backbone.pth"),
                str(faces / "faces" / "id_00"),
                "--output",
                str(faces / "scores.txt"),
                "--embeddings",
                str(faces / "emb.npy"),
                "--no-progress",
            ]
        )
        == 0
    )
    (faces / "pairs.txt").write_text("img_00 img_01 1\nimg_02 img_03 0\n")
    assert main(evaluate) == 0
