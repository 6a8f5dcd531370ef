"""The RecordIO container of MXNet/insightface datasets, read and written without mxnet.

A ``.rec`` file is a sequence of records; the ``.idx`` beside it has one ``key<TAB>offset`` line per
record. Each record on disk::

    uint32 magic 0xced7230a | uint32 (cflag << 29) | length | payload[length] | zero pad to 4 bytes

``cflag`` is 0 for a whole record. A payload that contains the magic number at a 4-byte aligned
position is written in parts, split at each such occurrence with the magic itself left out:
cflag 1 (first part), 2 (middle parts), 3 (last part); the reader joins the parts with the magic.

A payload starts with the image-record header ``IfQQ`` (flag, float32 label, id, id2); when
``flag > 0`` the label field is unused and ``flag`` float32 labels follow the header. The rest of
the payload is the encoded image.
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

import numpy as np

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_RECORD_HEAD = struct.Struct("<II")
_LENGTH_BITS = 29
_LENGTH_MASK = (1 << _LENGTH_BITS) - 1
_WHOLE, _FIRST, _MIDDLE, _LAST = 0, 1, 2, 3
_IMAGE_HEADER = struct.Struct("<IfQQ")


class CorruptRecordError(ValueError):
    """A record that cannot be read: bad magic, bad part sequence, truncated or undecodable."""


class ImageHeader(NamedTuple):
    """``label`` is a float when ``flag == 0``, else a tuple of ``flag`` floats."""

    flag: int
    label: float | tuple[float, ...]
    id: int
    id2: int


def pack_image_record(label: float | tuple[float, ...], image: bytes, id: int = 0, id2: int = 0) -> bytes:
    """The payload of one record: header, extra labels when ``label`` is a sequence, then ``image``."""
    if isinstance(label, (tuple, list)):
        labels = np.asarray(label, dtype="<f4")
        return _IMAGE_HEADER.pack(labels.size, 0.0, id, id2) + labels.tobytes() + image
    return _IMAGE_HEADER.pack(0, float(label), id, id2) + image


def unpack_image_record(payload: bytes) -> tuple[ImageHeader, bytes]:
    """``(header, image bytes)`` of a record payload."""
    if len(payload) < _IMAGE_HEADER.size:
        raise CorruptRecordError(
            f"payload of {len(payload)} bytes is shorter than the {_IMAGE_HEADER.size}-byte header"
        )
    flag, label, id_, id2 = _IMAGE_HEADER.unpack_from(payload)
    body = payload[_IMAGE_HEADER.size :]
    if flag == 0:
        return ImageHeader(0, label, id_, id2), body
    if len(body) < 4 * flag:
        raise CorruptRecordError(f"header announces {flag} labels but only {len(body)} bytes follow")
    labels = tuple(float(x) for x in np.frombuffer(body, dtype="<f4", count=flag))
    return ImageHeader(flag, labels, id_, id2), body[4 * flag :]


def read_index(idx_path: str | os.PathLike) -> dict[int, int]:
    """``{key: byte offset}`` from a ``.idx`` file, in file order."""
    index = {}
    with open(idx_path, encoding="ascii") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                raise ValueError(f"{idx_path}:{line_number}: expected 'key<TAB>offset', got {line.rstrip()!r}")
            index[int(fields[0])] = int(fields[1])
    return index


class RecordReader:
    """Random access to the records of a ``.rec``/``.idx`` pair.

    The file is opened on first use in each process, so a reader can be handed to DataLoader
    workers (each worker opens its own handle).
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None) -> None:
        self.rec_path = os.fspath(rec_path)
        self.idx_path = os.fspath(idx_path) if idx_path is not None else os.path.splitext(self.rec_path)[0] + ".idx"
        for path in (self.rec_path, self.idx_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"RecordIO file not found: {path}")
        self.index = read_index(self.idx_path)
        self._file = None
        self._pid = None

    def keys(self) -> list[int]:
        return list(self.index)

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None, "_pid": None}

    def _handle(self):
        if self._file is None or self._pid != os.getpid():
            self._file = open(self.rec_path, "rb")
            self._pid = os.getpid()
        return self._file

    def read(self, key: int) -> bytes:
        """The payload of record ``key``; raises :class:`CorruptRecordError` if it cannot be read."""
        if key not in self.index:
            raise KeyError(f"no record with key {key} in {self.idx_path}")
        file = self._handle()
        file.seek(self.index[key])
        parts, expected = [], (_WHOLE, _FIRST)
        while True:
            cflag, data = self._read_part(file, key)
            if cflag not in expected:
                raise CorruptRecordError(f"record {key}: part flag {cflag} where {expected} was expected")
            parts.append(data)
            if cflag in (_WHOLE, _LAST):
                return _MAGIC_BYTES.join(parts)
            expected = (_MIDDLE, _LAST)

    def _read_part(self, file, key: int) -> tuple[int, bytes]:
        head = file.read(_RECORD_HEAD.size)
        if len(head) < _RECORD_HEAD.size:
            raise CorruptRecordError(f"record {key}: file ends inside the record header")
        magic, lrecord = _RECORD_HEAD.unpack(head)
        if magic != MAGIC:
            raise CorruptRecordError(f"record {key}: bad magic 0x{magic:08x}")
        length = lrecord & _LENGTH_MASK
        data = file.read(length)
        if len(data) < length:
            raise CorruptRecordError(f"record {key}: file ends {length - len(data)} bytes before the record does")
        file.seek(-length % 4, os.SEEK_CUR)
        return lrecord >> _LENGTH_BITS, data

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class RecordWriter:
    """Writes a ``.rec``/``.idx`` pair; use as a context manager."""

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None) -> None:
        self.rec_path = os.fspath(rec_path)
        self.idx_path = os.fspath(idx_path) if idx_path is not None else os.path.splitext(self.rec_path)[0] + ".idx"
        self._rec = open(self.rec_path, "wb")
        self._idx = open(self.idx_path, "w", encoding="ascii")
        self._keys: set[int] = set()

    def write(self, key: int, payload: bytes) -> None:
        if key in self._keys:
            raise ValueError(f"key {key} was already written")
        self._keys.add(key)
        self._idx.write(f"{key}\t{self._rec.tell()}\n")
        for cflag, part in _split_at_magic(payload):
            if len(part) > _LENGTH_MASK:
                raise ValueError(f"record {key}: a part of {len(part)} bytes exceeds the 2^29 − 1 byte limit")
            self._rec.write(_RECORD_HEAD.pack(MAGIC, (cflag << _LENGTH_BITS) | len(part)))
            self._rec.write(part)
            self._rec.write(b"\0" * (-len(part) % 4))

    def close(self) -> None:
        self._rec.close()
        self._idx.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _split_at_magic(payload: bytes) -> list[tuple[int, bytes]]:
    """The parts of ``payload`` split at each 4-byte aligned magic number, with their cflags."""
    cuts = [i for i in range(0, len(payload) - 3, 4) if payload[i : i + 4] == _MAGIC_BYTES]
    if not cuts:
        return [(_WHOLE, payload)]
    starts, ends = [0, *(cut + 4 for cut in cuts)], [*cuts, len(payload)]
    flags = [_FIRST, *[_MIDDLE] * (len(cuts) - 1), _LAST]
    return [(flag, payload[start:end]) for flag, start, end in zip(flags, starts, ends, strict=True)]
