"""Verification sets: the restricted unpickler, .bin round trip, lazy decoding, flip embeddings, 10-fold accuracy."""

import io
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from crfiqa.data import UnreadableImageError
from crfiqa.evaluate import (
    UnsafePickleError,
    embed_verification_set,
    read_verification_bin,
    verification_accuracy,
)


def _jpeg(seed: int, size: int = 112) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _write_bin(path, bins, issame, protocol=pickle.HIGHEST_PROTOCOL):
    with open(path, "wb") as file:
        pickle.dump((bins, issame), file, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 4])
def test_bin_round_trip(tmp_path, protocol):
    bins, issame = [_jpeg(i) for i in range(6)], [True, False, True]
    _write_bin(tmp_path / "tiny.bin", bins, issame, protocol)
    dataset = read_verification_bin(tmp_path / "tiny.bin")
    assert dataset.name == "tiny" and len(dataset) == 6
    np.testing.assert_array_equal(dataset.issame, issame)
    assert dataset.encoded == tuple(bins)
    expected = np.array(Image.open(io.BytesIO(bins[3])).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(dataset.image(3)), expected)
    batches = list(dataset.batches(batch_size=4))
    assert [tuple(b.shape) for b in batches] == [(4, 3, 112, 112), (2, 3, 112, 112)]
    torch.testing.assert_close(batches[0][3], torch.from_numpy(expected).permute(2, 0, 1).float() / 127.5 - 1.0)


def test_python2_pickle_strings_load_as_bytes(tmp_path):
    # What Python 2 wrote for ([str, str], [True]) — the form of the published .bin files.
    python2 = b"\x80\x02]q\x00(U\x03abcq\x01U\x03defq\x02e]q\x03\x88a\x86q\x04."
    (tmp_path / "py2.bin").write_bytes(python2)
    dataset = read_verification_bin(tmp_path / "py2.bin")
    assert dataset.encoded == (b"abc", b"def")
    np.testing.assert_array_equal(dataset.issame, [True])


def test_images_decode_only_when_their_batch_is_reached(tmp_path):
    bins = [_jpeg(i) for i in range(4)] + [b"not an image", _jpeg(5)]
    _write_bin(tmp_path / "late_damage.bin", bins, [True, False, True])
    dataset = read_verification_bin(tmp_path / "late_damage.bin")  # nothing decoded yet
    batches = dataset.batches(batch_size=4)
    assert next(batches).shape[0] == 4
    with pytest.raises(UnreadableImageError):
        next(batches)


class _CreatesFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class _RunsShell:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("payload", [_CreatesFile, _RunsShell])
def test_malicious_pickle_is_refused_without_running(tmp_path, payload):
    # The payload is real: an ordinary unpickler does create the file.
    witness = tmp_path / "witness"
    pickle.loads(pickle.dumps(payload(str(witness))))
    assert witness.exists()

    target = tmp_path / "created_by_pickle"
    _write_bin(tmp_path / "evil.bin", [_jpeg(0), payload(str(target))], [True])
    with pytest.raises(UnsafePickleError, match="refusing to load global"):
        read_verification_bin(tmp_path / "evil.bin")
    assert not target.exists()


def test_codecs_encode_is_only_allowed_for_latin1_bytes(tmp_path):
    class _Rot13:
        def __reduce__(self):
            return (__import__("_codecs").encode, ("text", "rot13"))

    _write_bin(tmp_path / "rot13.bin", [b"a", _Rot13()], [True], protocol=2)
    with pytest.raises(UnsafePickleError, match="latin-1"):
        read_verification_bin(tmp_path / "rot13.bin")


@pytest.mark.parametrize(
    "content, message",
    [
        (([b"a"], [True]), "2 images per pair|two per pair"),
        ((["a", "b"], [True]), "list of encoded bytes"),
        (([b"a", b"b"], [2]), "only 0 and 1"),
        (([b"a", b"b"],), r"\(bins, issame\)"),
        (([], []), "two per pair"),
    ],
)
def test_malformed_content_is_a_value_error(tmp_path, content, message):
    with open(tmp_path / "bad.bin", "wb") as file:
        pickle.dump(content, file)
    with pytest.raises(ValueError, match=message):
        read_verification_bin(tmp_path / "bad.bin")


def test_truncated_file_is_a_value_error(tmp_path):
    _write_bin(tmp_path / "whole.bin", [_jpeg(0), _jpeg(1)], [True])
    (tmp_path / "cut.bin").write_bytes((tmp_path / "whole.bin").read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable verification set"):
        read_verification_bin(tmp_path / "cut.bin")


class _TinyEmbedder(torch.nn.Module):
    """Returns (embedding, quality) like crfiqa's IResNet; not symmetric under a left-right flip."""

    def __init__(self):
        super().__init__()
        self.project = torch.nn.Linear(3 * 8 * 8, 5)

    def forward(self, images):
        pooled = torch.nn.functional.adaptive_avg_pool2d(images, 8).flatten(1)
        embedding = self.project(pooled)
        return embedding, embedding.sum(1)


def test_flip_embeddings_are_the_sum_of_both_views(tmp_path):
    torch.manual_seed(0)
    _write_bin(tmp_path / "set.bin", [_jpeg(i) for i in range(6)], [True, False, True])
    dataset = read_verification_bin(tmp_path / "set.bin")
    model = _TinyEmbedder()
    flipped = embed_verification_set(model, dataset, batch_size=4)
    plain = embed_verification_set(model, dataset, batch_size=4, flip=False)
    assert flipped.shape == (6, 5) and flipped.dtype == np.float32
    images = torch.cat(list(dataset.batches(6)))
    with torch.no_grad():
        expected_plain = model(images)[0]
        expected = expected_plain + model(images.flip(-1))[0]
    np.testing.assert_allclose(plain, expected_plain.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(flipped, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(flipped, 2 * plain, atol=1e-4)


def test_ten_fold_accuracy_on_a_separable_set():
    rng = np.random.default_rng(0)
    pairs = 300
    issame = rng.random(pairs) < 0.5
    first = rng.standard_normal((pairs, 16))
    # Mated: a near copy (squared distance ≪ 0.01); non-mated: an independent vector (≈ 2).
    near_copy = first + 1e-3 * rng.standard_normal((pairs, 16))
    second = np.where(issame[:, None], near_copy, rng.standard_normal((pairs, 16)))
    embeddings = np.empty((2 * pairs, 16))
    embeddings[0::2], embeddings[1::2] = first, second
    result = verification_accuracy(embeddings, issame)
    assert result.accuracy == 1.0 and result.std == 0.0
    assert result.fold_accuracies.shape == (10,)
    np.testing.assert_allclose(result.fold_thresholds, 0.01)  # the lowest perfect threshold


def test_accuracy_is_at_chance_for_unrelated_labels():
    rng = np.random.default_rng(1)
    result = verification_accuracy(rng.standard_normal((2000, 8)), rng.random(1000) < 0.5)
    assert 0.4 < result.accuracy < 0.6


def test_accuracy_bad_arguments():
    with pytest.raises(ValueError, match="shape"):
        verification_accuracy(np.zeros((5, 3)), [True, False])
    with pytest.raises(ValueError, match="n_folds"):
        verification_accuracy(np.ones((4, 3)), [True, False], n_folds=10)
    with pytest.raises(ValueError, match="finite"):
        verification_accuracy(np.full((4, 3), np.nan), [True, False], n_folds=2)
