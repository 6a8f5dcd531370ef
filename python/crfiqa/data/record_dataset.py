"""insightface face datasets in RecordIO (``train.rec`` + ``train.idx``), read and written.

Layout (as insightface's ``face2rec``): record 0 carries two labels ``(a, b)``: the image records
have keys ``1 … a−1`` and the identity records keys ``a … b−1`` (one per identity, labels = the
range of its image keys). An image record's label is the identity id (a float, or the first of
its labels when ``flag > 0``). Without the two labels on record 0 every record is an image.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from .recordio import CorruptRecordError, RecordReader, RecordWriter, pack_image_record, unpack_image_record
from .skipping import Skipped
from .transforms import UnreadableImageError, decode_image, encode_jpeg, to_input_tensor


def _rec_path(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    return os.path.join(path, "train.rec") if os.path.isdir(path) else path


class RecordDataset(torch.utils.data.Dataset):
    """Items ``(normalized (3, size, size) float tensor, int label)``, or :class:`Skipped` for a
    corrupt or undecodable record.

    Args:
        path: a directory holding ``train.rec``/``train.idx``, or a ``.rec`` file with its ``.idx``.
        image_size: side of the returned images (resized bilinearly when the stored size differs).
    """

    def __init__(self, path: str | os.PathLike, image_size: int = 112) -> None:
        self.reader = RecordReader(_rec_path(path))
        self.image_size = image_size
        self.keys, self.num_identities = self._image_keys()
        if not self.keys:
            raise ValueError(f"{self.reader.rec_path} holds no image records")

    def _image_keys(self) -> tuple[list[int], int | None]:
        keys = self.reader.keys()
        if 0 not in self.reader.index:
            return keys, None
        try:
            header, _ = unpack_image_record(self.reader.read(0))
        except CorruptRecordError as error:
            raise ValueError(f"{self.reader.rec_path}: record 0 is unreadable ({error})") from error
        if header.flag < 2:
            return keys, None
        first_identity, end = int(header.label[0]), int(header.label[1])
        return [key for key in keys if 1 <= key < first_identity], end - first_identity

    def __len__(self) -> int:
        return len(self.keys)

    def name(self, index: int) -> str:
        return f"{self.reader.rec_path}:{self.keys[index]}"

    def __getitem__(self, index: int):
        key = self.keys[index]
        try:
            header, image = unpack_image_record(self.reader.read(key))
            pixels = to_input_tensor(decode_image(image), self.image_size)
        except (CorruptRecordError, UnreadableImageError) as error:
            return Skipped(self.name(index), str(error))
        label = header.label if header.flag == 0 else header.label[0]
        return pixels, int(label)


def write_record_dataset(
    directory: str | os.PathLike, samples: Sequence[tuple[Image.Image | np.ndarray | bytes, int]]
) -> int:
    """Write ``(image, identity)`` samples as ``directory/train.rec`` + ``train.idx``; returns the count.

    Images may be PIL images, ``(H, W, 3)`` uint8 arrays (both stored as JPEG) or encoded bytes
    (stored as given). Identities must be the integers ``0 … K−1``; the samples are stored grouped
    by identity (stable order), as the identity records require.
    """
    identities = [int(identity) for _, identity in samples]
    if not identities:
        raise ValueError("samples is empty")
    if sorted(set(identities)) != list(range(max(identities) + 1)):
        raise ValueError("samples: identities must be the integers 0 … K−1, each used at least once")
    order = sorted(range(len(samples)), key=identities.__getitem__)
    os.makedirs(directory, exist_ok=True)
    first_key: dict[int, int] = {}
    with RecordWriter(os.path.join(directory, "train.rec")) as writer:
        for key, position in enumerate(order, start=1):
            image, identity = samples[position][0], identities[position]
            data = image if isinstance(image, bytes) else encode_jpeg(image)
            writer.write(key, pack_image_record(float(identity), data, id=key))
            first_key.setdefault(identity, key)
        first_identity = len(order) + 1
        ends = [*(first_key[i] for i in range(1, len(first_key))), first_identity]
        for identity, end in enumerate(ends):
            writer.write(first_identity + identity, pack_image_record((first_key[identity], end), b""))
        # Record 0 goes last in the file; readers find it through the index.
        writer.write(0, pack_image_record((first_identity, first_identity + len(first_key)), b""))
    return len(order)
