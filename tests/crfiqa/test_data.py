"""RecordIO write → read round trips (byte-exact format), datasets, and skipping of corrupt records."""

import io
import os
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from crfiqa.data import (
    CorruptRecordError,
    ImageFolderDataset,
    RecordDataset,
    RecordReader,
    RecordWriter,
    SkipLog,
    Skipped,
    collate,
    normalize,
    pack_image_record,
    random_horizontal_flip,
    unpack_image_record,
    write_record_dataset,
)

MAGIC = struct.pack("<I", 0xCED7230A)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _images(count, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def test_record_bytes_follow_the_mxnet_layout(tmp_path):
    # Hand-built expectation: magic, (cflag << 29) | length, payload, zero padding to 4 bytes.
    with RecordWriter(tmp_path / "a.rec") as writer:
        writer.write(7, b"abcde")
        writer.write(3, b"wxyz")
    expected = MAGIC + struct.pack("<I", 5) + b"abcde\0\0\0" + MAGIC + struct.pack("<I", 4) + b"wxyz"
    assert (tmp_path / "a.rec").read_bytes() == expected
    assert (tmp_path / "a.idx").read_text() == "7\t0\n3\t16\n"


def test_payload_containing_the_magic_is_split_and_rejoined(tmp_path):
    payloads = {
        0: b"",
        1: b"x" * 5,
        2: MAGIC,  # the whole payload is the magic: two empty parts
        3: b"abcd" + MAGIC + b"efgh" + MAGIC + b"ij",  # two aligned occurrences: three parts
        4: b"ab" + MAGIC + b"cd",  # unaligned: not split
        5: os.urandom(1001),
    }
    with RecordWriter(tmp_path / "b.rec") as writer:
        for key, payload in payloads.items():
            writer.write(key, payload)
    raw = (tmp_path / "b.rec").read_bytes()
    # record 3 is written as parts with cflags 1, 2, 3 (first, middle, last)
    offset = int((tmp_path / "b.idx").read_text().splitlines()[3].split("\t")[1])
    flags = [
        struct.unpack_from("<I", raw, offset + 4)[0] >> 29,
        struct.unpack_from("<I", raw, offset + 16)[0] >> 29,
        struct.unpack_from("<I", raw, offset + 28)[0] >> 29,
    ]
    assert flags == [1, 2, 3]
    reader = RecordReader(tmp_path / "b.rec")
    assert reader.keys() == list(payloads)
    for key, payload in payloads.items():
        assert reader.read(key) == payload


def test_image_header_round_trip():
    header, body = unpack_image_record(pack_image_record(3.0, b"jpeg", id=9, id2=2))
    assert (header.flag, header.label, header.id, header.id2, body) == (0, 3.0, 9, 2, b"jpeg")
    header, body = unpack_image_record(pack_image_record((12.0, 40.0), b"x"))
    assert (header.flag, header.label, body) == (2, (12.0, 40.0), b"x")
    with pytest.raises(CorruptRecordError):
        unpack_image_record(b"short")


def test_record_dataset_round_trip(tmp_path):
    images = _images(7)
    identities = [2, 0, 1, 0, 2, 1, 0]
    samples = [(_png(image), identity) for image, identity in zip(images, identities, strict=True)]
    assert write_record_dataset(tmp_path, samples) == 7
    dataset = RecordDataset(tmp_path, image_size=16)
    assert len(dataset) == 7 and dataset.num_identities == 3
    # Stored grouped by identity (stable); the PNGs decode to the exact pixels.
    order = sorted(range(7), key=identities.__getitem__)
    for index, source in enumerate(order):
        tensor, label = dataset[index]
        assert label == identities[source]
        expected = normalize(torch.from_numpy(images[source]).permute(2, 0, 1))
        assert torch.equal(tensor, expected)
    # insightface layout: record 0 → (first identity key, end); identity records → image key ranges.
    reader = dataset.reader
    header0, _ = unpack_image_record(reader.read(0))
    assert header0.label == (8.0, 11.0)
    ranges = [unpack_image_record(reader.read(key))[0].label for key in (8, 9, 10)]
    assert ranges == [(1.0, 4.0), (4.0, 6.0), (6.0, 8.0)]


def test_record_dataset_stores_arrays_as_jpeg_and_resizes(tmp_path):
    write_record_dataset(tmp_path, [(image, 0) for image in _images(2, size=24)])
    _, jpeg = unpack_image_record(RecordReader(tmp_path / "train.rec").read(1))
    assert jpeg[:2] == b"\xff\xd8"
    tensor, label = RecordDataset(tmp_path / "train.rec", image_size=16)[0]
    assert tensor.shape == (3, 16, 16) and label == 0 and -1.0 <= tensor.min() <= tensor.max() <= 1.0


def test_write_record_dataset_rejects_bad_identities(tmp_path):
    with pytest.raises(ValueError, match="identities"):
        write_record_dataset(tmp_path, [(_png(_images(1)[0]), 1)])
    assert not (tmp_path / "train.rec").exists()


def test_corrupt_records_are_skipped_counted_and_reported(tmp_path):
    samples = [(_png(image), index % 2) for index, image in enumerate(_images(6))]
    write_record_dataset(tmp_path, samples)
    index = dict(line.split("\t") for line in (tmp_path / "train.idx").read_text().splitlines())
    raw = bytearray((tmp_path / "train.rec").read_bytes())
    raw[int(index["2"])] ^= 0xFF  # record 2: bad magic
    jpeg_start = int(index["4"]) + 8 + 24
    raw[jpeg_start : jpeg_start + 40] = b"\0" * 40  # record 4: the image bytes no longer decode
    (tmp_path / "train.rec").write_bytes(bytes(raw))

    dataset = RecordDataset(tmp_path, image_size=16)
    items = [dataset[i] for i in range(len(dataset))]
    skipped = [item for item in items if isinstance(item, Skipped)]
    assert [item.name for item in skipped] == [dataset.name(1), dataset.name(3)]
    assert "bad magic" in skipped[0].reason and "decode" in skipped[1].reason

    log = SkipLog()
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=collate)
    kept = 0
    for batch in loader:
        log.add(batch.skipped)
        kept += len(batch.targets)
        assert batch.images.shape[0] == len(batch.targets)
    assert (kept, log.count) == (4, 2)
    assert "skipped 2 unreadable" in log.summary() and dataset.name(1) in log.summary()


def test_truncated_record_file_is_a_corrupt_record(tmp_path):
    with RecordWriter(tmp_path / "c.rec") as writer:
        writer.write(0, b"a" * 64)
    (tmp_path / "c.rec").write_bytes((tmp_path / "c.rec").read_bytes()[:40])
    with pytest.raises(CorruptRecordError, match="file ends"):
        RecordReader(tmp_path / "c.rec").read(0)


def test_collate_of_an_all_skipped_batch():
    batch = collate([Skipped("a", "x"), Skipped("b", "y")])
    assert batch.images is None and batch.targets == [] and len(batch.skipped) == 2


def test_image_folder_dataset(tmp_path):
    for identity, count in (("bob", 2), ("alice", 1)):
        (tmp_path / identity).mkdir()
        for index, image in enumerate(_images(count, seed=count)):
            Image.fromarray(image).save(tmp_path / identity / f"{index}.png")
    (tmp_path / "bob" / "notes.txt").write_text("not an image")
    dataset = ImageFolderDataset(tmp_path, image_size=8)
    assert dataset.identities == ["alice", "bob"] and dataset.num_identities == 2
    assert [label for _, label in (dataset[i] for i in range(len(dataset)))] == [0, 1, 1]
    assert dataset[0][0].shape == (3, 8, 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        ImageFolderDataset(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        ImageFolderDataset(tmp_path / "missing")


def test_random_flip_is_reproducible_from_its_generator():
    images = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).reshape(2, 3, 2, 4).repeat(8, 1, 1, 1)
    first = random_horizontal_flip(images, torch.Generator().manual_seed(5))
    second = random_horizontal_flip(images, torch.Generator().manual_seed(5))
    assert torch.equal(first, second)
    flipped = [(not torch.equal(a, b)) for a, b in zip(first, images, strict=True)]
    assert any(flipped) and not all(flipped)
    for out, original, was_flipped in zip(first, images, flipped, strict=True):
        assert torch.equal(out, original.flip(-1) if was_flipped else original)
