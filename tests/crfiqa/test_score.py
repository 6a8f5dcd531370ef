"""Scoring: folders, file lists and .rec files → 'path score' lines equal to the model's outputs."""

import numpy as np
import pytest
import torch
from PIL import Image

from crfiqa.data import load_image, to_input_tensor, write_record_dataset
from crfiqa.formats import write_quality_scores
from crfiqa.score import load_quality_model, open_images, score_images

from .synthetic import calibrated_backbone, write_images


@pytest.fixture
def backbone_file(tmp_path):
    model = calibrated_backbone()
    torch.save(model.state_dict(), tmp_path / "backbone.pth")
    return tmp_path / "backbone.pth", model


def _direct(model, paths):
    images = torch.stack([to_input_tensor(load_image(path), 16) for path in paths])
    with torch.no_grad():
        embedding, quality = model(images)
    return embedding.numpy(), quality.numpy()


def test_folder_scores_equal_the_model_outputs(tmp_path, backbone_file):
    path, model = backbone_file
    paths = write_images(tmp_path / "faces" / "a", 3) + write_images(tmp_path / "faces" / "b", 2, seed=1)
    scorer = load_quality_model(path, "cpu")
    result = score_images(
        scorer, open_images(tmp_path / "faces", scorer.input_size), batch_size=2, keep_embeddings=True, progress=False
    )
    assert result.names == ["a/img_00.png", "a/img_01.png", "a/img_02.png", "b/img_00.png", "b/img_01.png"]
    assert result.skipped.count == 0
    embedding, quality = _direct(model, sorted(paths))
    np.testing.assert_allclose(result.scores, quality, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.embeddings, embedding, rtol=1e-5, atol=1e-6)

    write_quality_scores(tmp_path / "scores.txt", result.names, result.scores)
    lines = (tmp_path / "scores.txt").read_text().splitlines()
    assert [line.rsplit(" ", 1)[0] for line in lines] == result.names
    np.testing.assert_allclose([float(line.rsplit(" ", 1)[1]) for line in lines], quality, rtol=1e-6)


def test_file_list_keeps_the_listed_names(tmp_path, backbone_file):
    path, model = backbone_file
    write_images(tmp_path / "imgs", 2)
    (tmp_path / "list.txt").write_text("imgs/img_01.png\n\nimgs/img_00.png\n")
    scorer = load_quality_model(path, "cpu")
    result = score_images(scorer, open_images(tmp_path / "list.txt", 16), progress=False)
    assert result.names == ["imgs/img_01.png", "imgs/img_00.png"]
    _, quality = _direct(model, [tmp_path / name for name in result.names])
    np.testing.assert_allclose(result.scores, quality, rtol=1e-5, atol=1e-6)


def test_rec_file_is_scored_by_record(tmp_path, backbone_file):
    path, model = backbone_file
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    pngs = []
    for index, array in enumerate(arrays):
        Image.fromarray(array).save(tmp_path / f"{index}.png")
        pngs.append((tmp_path / f"{index}.png").read_bytes())
    write_record_dataset(tmp_path / "rec", [(data, 0) for data in pngs])
    scorer = load_quality_model(path, "cpu")
    result = score_images(scorer, open_images(tmp_path / "rec" / "train.rec", 16), progress=False)
    assert result.names == [f"train.rec:{key}" for key in (1, 2, 3)]
    _, quality = _direct(model, [tmp_path / f"{index}.png" for index in range(3)])
    np.testing.assert_allclose(result.scores, quality, rtol=1e-5, atol=1e-6)


def test_our_checkpoint_and_a_bare_state_dict_score_alike(tmp_path, backbone_file):
    path, model = backbone_file
    torch.save({"backbone": model.state_dict(), "model_config": model.config, "position": {}}, tmp_path / "ckpt.pt")
    write_images(tmp_path / "faces", 3)
    dataset = open_images(tmp_path / "faces", 16)
    ours = score_images(load_quality_model(tmp_path / "ckpt.pt", "cpu"), dataset, progress=False)
    bare = score_images(load_quality_model(path, "cpu"), dataset, progress=False)
    assert np.array_equal(ours.scores, bare.scores)


def test_bgr_order_swaps_the_channels(tmp_path, backbone_file):
    path, model = backbone_file
    paths = write_images(tmp_path / "faces", 2)
    result = score_images(
        load_quality_model(path, "cpu"), open_images(tmp_path / "faces", 16), bgr=True, progress=False
    )
    images = torch.stack([to_input_tensor(load_image(p), 16) for p in paths]).flip(1)
    with torch.no_grad():
        np.testing.assert_allclose(result.scores, model(images)[1].numpy(), rtol=1e-5, atol=1e-6)


def test_unreadable_images_are_skipped_and_reported(tmp_path, backbone_file):
    path, _ = backbone_file
    write_images(tmp_path / "faces", 2)
    (tmp_path / "faces" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    result = score_images(load_quality_model(path, "cpu"), open_images(tmp_path / "faces", 16), progress=False)
    assert len(result.names) == 2 and result.skipped.count == 1
    assert result.skipped.items[0].name.endswith("broken.jpg")


def test_input_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        open_images(tmp_path / "empty", 16)
    with pytest.raises(FileNotFoundError):
        open_images(tmp_path / "missing", 16)
    with pytest.raises(FileNotFoundError):
        load_quality_model(tmp_path / "missing.pth")


def test_resized_and_converted_images_are_reported_once(tmp_path, backbone_file):
    path, _ = backbone_file
    write_images(tmp_path / "faces", 2)  # 16×16 RGB: the model's input
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (90, 60, 4), dtype=np.uint8), "RGBA").save(
            tmp_path / "faces" / f"z{index}.png"
        )
    result = score_images(
        load_quality_model(path, "cpu"), open_images(tmp_path / "faces", 16), batch_size=2, progress=False
    )
    assert result.warnings() == [
        "3 of 5 image(s) resized to the model's input (3 from 60×90; e.g. z0.png)",
        "3 of 5 image(s) converted to the model's input (3 from RGBA; e.g. z0.png)",
    ]
