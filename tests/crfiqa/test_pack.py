"""``crfiqa pack``: identity folders or a 'path label' list → a .rec/.idx that trains and scores."""

import numpy as np
import pytest
import torch
from PIL import Image

from crfiqa.cli import main
from crfiqa.data import RecordDataset, load_image, to_input_tensor
from crfiqa.data.pack import pack_images

from .synthetic import write_images


def test_pack_identity_folders_then_read_every_image_and_label(tmp_path, capsys):
    paths = {
        identity: write_images(tmp_path / "faces" / name, count, seed=identity)
        for identity, (name, count) in enumerate([("alice", 2), ("bob", 3)])
    }
    assert main(["pack", str(tmp_path / "faces"), str(tmp_path / "out" / "data.rec")]) == 0
    captured = capsys.readouterr()
    assert "packed 5 image(s) of 2 identities" in captured.out
    assert "pack: 100%" in captured.err  # the tqdm progress bar
    records = RecordDataset(tmp_path / "out" / "data.rec", 16)
    assert records.num_identities == 2 and len(records) == 5
    expected = [(path, identity) for identity, files in paths.items() for path in files]
    for index, (path, identity) in enumerate(expected):
        image, label = records[index]
        assert label == identity and torch.equal(image, to_input_tensor(load_image(path), 16))  # PNG stored as is
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["data.idx", "data.rec"]  # no partial files


def test_pack_a_labelled_list_and_overwrite(tmp_path):
    (tmp_path / "imgs").mkdir()
    ramp = np.linspace(0, 255, 16 * 16 * 3).reshape(16, 16, 3).astype(np.uint8)  # smooth: JPEG keeps it closely
    for index in range(3):
        Image.fromarray(np.roll(ramp, 40 * index)).save(tmp_path / "imgs" / f"img_{index:02d}.bmp")
    (tmp_path / "list.txt").write_text("imgs/img_02.bmp 1\nimgs/img_00.bmp 0\nimgs/img_01.bmp 1\n")
    (tmp_path / "data.rec").write_text("old")
    assert main(["pack", str(tmp_path / "list.txt"), str(tmp_path / "data.rec"), "--no-progress"]) == 2
    assert (tmp_path / "data.rec").read_text() == "old"
    assert main(["pack", str(tmp_path / "list.txt"), str(tmp_path / "data.rec"), "--overwrite", "--no-progress"]) == 0
    records = RecordDataset(tmp_path / "data.rec", 16)
    assert [records[i][1] for i in range(3)] == [0, 1, 1]
    # BMP is stored as JPEG (quality 95): the same image up to compression noise.
    original = to_input_tensor(load_image(tmp_path / "imgs" / "img_00.bmp"), 16)
    assert records[0][0].shape == original.shape and (records[0][0] - original).abs().mean() < 0.02
    with pytest.raises(ValueError, match="0 … K−1"):
        pack_images([(str(tmp_path / "imgs" / "img_00.bmp"), 1)], tmp_path / "x.rec", progress=False)
