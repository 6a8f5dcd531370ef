"""Photos to aligned crops: read, detect, align, one photo at a time, the time of each step kept.

A photo yields one :class:`PhotoFaces`: its status (``ok``, ``no face``, ``unreadable: REASON``)
and its aligned faces, largest first (``faces="largest"``: that one only). Crop names are the
photo's name without extension plus ``.png`` (``-face<k>.png`` with ``faces="all"``, k = 0 the
largest): the files ``crfiqa align`` writes and the names ``crfiqa score --align`` reports.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..data import UnreadableImageError
from ..formats import FACE_COLUMNS
from ..options import FACE_CHOICES
from .align import align_face
from .detect import Face, FaceDetector
from .photos import read_photo

OK, NO_FACE, UNREADABLE = "ok", "no face", "unreadable"


@dataclass
class AlignedFace:
    name: str  # the crop's name
    index: int  # 0 = the largest face of the photo
    face: Face
    crop: np.ndarray  # (size, size, 3) uint8 RGB
    matrix: np.ndarray  # (2, 3): photo pixels → crop pixels


@dataclass
class PhotoFaces:
    name: str  # the photo's name
    status: str
    faces: list[AlignedFace] = field(default_factory=list)


@dataclass
class Timings:
    """Seconds spent in each step, summed over photos."""

    read: float = 0.0
    detect: float = 0.0
    align: float = 0.0


def crop_name(photo_name: str, index: int | None = None) -> str:
    """``a/b.jpg`` → ``a/b.png`` (``a/b-face<index>.png`` when ``index`` is given); kept inside the
    output folder: no leading ``/`` and no ``..`` parts (a list's ``../x.jpg`` → ``x.png``)."""
    parts = [part for part in posixpath.normpath(photo_name.replace("\\", "/")).split("/") if part not in ("", "..")]
    stem = posixpath.splitext("/".join(parts))[0]
    return f"{stem}.png" if index is None else f"{stem}-face{index}.png"


def check_crop_names(photo_names: Iterable[str], faces: str) -> None:
    """``ValueError`` when two photos would give crops of the same name (``a.jpg`` and ``a.png``)."""
    seen: dict[str, str] = {}
    for name in photo_names:
        crop = crop_name(name, 0 if faces == "all" else None)
        if crop in seen:
            raise ValueError(f"{seen[crop]!r} and {name!r} would both be cropped to {crop!r}; rename one")
        seen[crop] = name


def align_photos(
    photos: Iterable[tuple[str, str]],
    *,
    size: int = 112,
    faces: str = "largest",
    detector: FaceDetector | None = None,
    timings: Timings | None = None,
) -> Iterator[PhotoFaces]:
    """The aligned ``size × size`` faces of each ``(path, name)`` photo, in order."""
    if faces not in FACE_CHOICES:
        raise ValueError(f"faces must be one of {FACE_CHOICES}, got {faces!r}")
    detector = detector if detector is not None else FaceDetector()
    timings = timings if timings is not None else Timings()
    for path, name in photos:
        start = time.perf_counter()
        try:
            image = read_photo(path)
        except UnreadableImageError as error:
            timings.read += time.perf_counter() - start
            yield PhotoFaces(name, f"{UNREADABLE}: {error}")
            continue
        detected = time.perf_counter()
        timings.read += detected - start
        found = detector(image)
        aligned = time.perf_counter()
        timings.detect += aligned - detected
        chosen = found if faces == "all" else found[:1]
        result = PhotoFaces(name, OK if chosen else NO_FACE)
        for index, face in enumerate(chosen):
            crop, matrix = align_face(image, face.landmarks, size)
            result.faces.append(
                AlignedFace(crop_name(name, index if faces == "all" else None), index, face, crop, matrix)
            )
        timings.align += time.perf_counter() - aligned
        yield result


def face_table_rows(photo: PhotoFaces) -> list[list[str]]:
    """The rows of ``landmarks.csv`` (:data:`crfiqa.formats.FACE_COLUMNS`) for ``photo``: one per
    face, or one with the status and empty fields when it has none."""
    if not photo.faces:
        return [[photo.name, "", photo.status] + [""] * (len(FACE_COLUMNS) - 3)]
    return [
        [photo.name, str(face.index), photo.status, f"{face.face.score:.4f}"]
        + [f"{value:.1f}" for value in face.face.box]
        + [f"{value:.1f}" for value in face.face.landmarks.reshape(-1)]
        for face in photo.faces
    ]
