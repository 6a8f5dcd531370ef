"""insightface face datasets in RecordIO (``train.rec`` + ``train.idx``), read and written.

Layout (as insightface's ``face2rec``): record 0 carries two labels ``(a, b)``: the image records
have keys ``1 … a−1`` and the identity records keys ``a … b−1`` (one per identity, labels = the
range of its image keys). An image record's label is the identity id (a float, or the first of
its labels when ``flag > 0``). Without the two labels on record 0 every record is an image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from .recordio import CorruptRecordError, RecordReader, RecordWriter, pack_image_record, unpack_image_record
from .skipping import Skipped
from .transforms import UnreadableImageError, adjustments, decode_image, encode_jpeg, to_input_tensor


def _rec_path(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    return os.path.join(path, "train.rec") if os.path.isdir(path) else path


class RecordDataset(torch.utils.data.Dataset):
    """Items ``(normalized (3, size, size) float tensor, int label)``, or :class:`Skipped` for a
    corrupt or undecodable record.

    A label that is not a whole number in ``[0, num_classes)`` (or the identity count that record 0
    gives) is an error naming the record: training on it would be silently wrong.

    Args:
        path: a directory holding ``train.rec``/``train.idx``, or a ``.rec`` file with its ``.idx``.
        image_size: side of the returned images (resized bilinearly when the stored size differs).
        num_classes: the bound on labels when record 0 does not give the identity count.
    """

    def __init__(self, path: str | os.PathLike, image_size: int = 112, num_classes: int | None = None) -> None:
        self.reader = RecordReader(_rec_path(path))
        self.image_size = image_size
        self.keys, self.num_identities = self._image_keys()
        if not self.keys:
            raise ValueError(f"{self.reader.rec_path} holds no image records")
        self.label_bound = self.num_identities if self.num_identities is not None else num_classes

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
        assert isinstance(header.label, tuple)  # flag ≥ 2: the identity range's two floats
        first_identity, end = int(header.label[0]), int(header.label[1])
        return [key for key in keys if 1 <= key < first_identity], end - first_identity

    def __len__(self) -> int:
        return len(self.keys)

    def name(self, index: int) -> str:
        """``FILE.rec:KEY``: the name ``crfiqa score`` writes and ``crfiqa evaluate`` joins on."""
        return f"{os.path.basename(self.reader.rec_path)}:{self.keys[index]}"

    def read(self, index: int):
        """``(normalized image, header, changes)`` of item ``index`` (``changes``: see
        :func:`~crfiqa.data.transforms.adjustments`), or :class:`Skipped` if it cannot be read."""
        try:
            header, data = unpack_image_record(self.reader.read(self.keys[index]))
            image = decode_image(data, mode=None)
            return to_input_tensor(image, self.image_size), header, adjustments(image, self.image_size)
        except (CorruptRecordError, UnreadableImageError) as error:
            return Skipped(self.name(index), str(error))

    def __getitem__(self, index: int):
        item = self.read(index)
        if isinstance(item, Skipped):
            return item
        pixels, header, _ = item
        label = header.label if header.flag == 0 else header.label[0]
        if not math.isfinite(label) or label != int(label) or label < 0:
            raise ValueError(
                f"{self.reader.rec_path}: record {self.keys[index]} has label {label}, "
                "not an identity number (a whole number ≥ 0)"
            )
        if self.label_bound is not None and label >= self.label_bound:
            raise ValueError(
                f"{self.reader.rec_path}: record {self.keys[index]} has label {int(label)}, but there "
                f"are {self.label_bound} identities (labels 0 … {self.label_bound - 1})"
            )
        return pixels, int(label)


def write_record_dataset(
    directory: str | os.PathLike, samples: Sequence[tuple[Image.Image | np.ndarray | bytes, int]]
) -> int:
    """Write ``(image, identity)`` samples as ``directory/train.rec`` + ``train.idx``; returns the count.

    Images may be PIL images, ``(H, W, 3)`` uint8 arrays (both stored as JPEG) or encoded bytes
    (stored as given). Identities must be the integers ``0 … K−1``; the samples are stored grouped
    by identity (stable order), as the identity records require.
    """
    os.makedirs(directory, exist_ok=True)
    images = [image for image, _ in samples]

    def encoded(position: int) -> bytes:
        image = images[position]
        return image if isinstance(image, bytes) else encode_jpeg(image)

    return write_records(os.path.join(directory, "train.rec"), [identity for _, identity in samples], encoded)


def write_records(rec_path: str | os.PathLike, identities: Sequence[int], encoded, progress=None) -> int:
    """Write ``rec_path`` and the ``.idx`` beside it (each atomically): image ``i`` has identity
    ``identities[i]`` and bytes ``encoded(i)``; ``progress`` (e.g. a tqdm bar) is updated per image.

    Identities must be the integers ``0 … K−1``; the images are stored grouped by identity (stable
    order) with insightface's identity records and record 0, as :class:`RecordDataset` reads them."""
    from crfiqa_kernels.atomic_files import write_atomically

    identities = [int(identity) for identity in identities]
    if not identities:
        raise ValueError("no images to write")
    if sorted(set(identities)) != list(range(max(identities) + 1)):
        raise ValueError("identities must be the integers 0 … K−1, each used at least once")
    order = sorted(range(len(identities)), key=identities.__getitem__)
    idx_path = os.path.splitext(os.fspath(rec_path))[0] + ".idx"

    def write_both(rec_temporary, idx_temporary) -> None:
        first_key: dict[int, int] = {}
        with RecordWriter(rec_temporary, idx_temporary) as writer:
            for key, position in enumerate(order, start=1):
                identity = identities[position]
                writer.write(key, pack_image_record(float(identity), encoded(position), id=key))
                first_key.setdefault(identity, key)
                if progress is not None:
                    progress.update(1)
            first_identity = len(order) + 1
            ends = [*(first_key[i] for i in range(1, len(first_key))), first_identity]
            for identity, end in enumerate(ends):
                writer.write(first_identity + identity, pack_image_record((first_key[identity], end), b""))
            # Record 0 goes last in the file; readers find it through the index.
            writer.write(0, pack_image_record((first_identity, first_identity + len(first_key)), b""))

    # The .rec is renamed into place first, the .idx last: a reader finds both complete or the old pair.
    write_atomically(
        idx_path,
        lambda idx_temporary: write_atomically(
            rec_path, lambda rec_temporary: write_both(rec_temporary, idx_temporary)
        ),
    )
    return len(order)
