"""``crfiqa pack``: image files with identity labels → an insightface ``.rec``/``.idx`` training set."""

from __future__ import annotations

import os

from tqdm import tqdm

from ..formats import read_labelled_list
from .image_folder import find_images
from .record_dataset import write_records
from .transforms import UnreadableImageError, encode_jpeg, load_image

STORED_AS_IS = (".jpg", ".jpeg", ".png")


def labelled_images(source: str | os.PathLike) -> list[tuple[str, int]]:
    """``(path, identity)`` from a folder of identity folders (identities in sorted folder order)
    or a text file of ``path label`` lines (paths relative to the file's folder)."""
    source = os.fspath(source)
    if os.path.isdir(source):
        identities = sorted(entry.name for entry in os.scandir(source) if entry.is_dir())
        samples = [
            (path, label)
            for label, identity in enumerate(identities)
            for path in find_images(os.path.join(source, identity))
        ]
        if not samples:
            raise ValueError(f"no images found in identity folders under {source}")
        return samples
    if not os.path.isfile(source):
        raise FileNotFoundError(f"no such file or folder: {source}")
    return read_labelled_list(source)


def pack_images(
    samples: list[tuple[str, int]], rec_path: str | os.PathLike, *, overwrite: bool = False, progress: bool = True
) -> tuple[int, int]:
    """Write ``samples`` into ``rec_path`` and its ``.idx``; returns ``(images, identities)``.

    JPEG and PNG files are stored byte for byte (after checking that they decode), others as JPEG.
    """
    rec_path = os.fspath(rec_path)
    if not rec_path.endswith(".rec"):
        raise ValueError(f"the output must be a .rec file, got {rec_path}")
    idx_path = os.path.splitext(rec_path)[0] + ".idx"
    existing = [path for path in (rec_path, idx_path) if os.path.exists(path)]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists: choose another output or give --overwrite")
    os.makedirs(os.path.dirname(os.path.abspath(rec_path)), exist_ok=True)

    def encoded(position: int) -> bytes:
        path = samples[position][0]
        try:
            image = load_image(path)
            if path.lower().endswith(STORED_AS_IS):
                with open(path, "rb") as file:
                    return file.read()
            return encode_jpeg(image)
        except (UnreadableImageError, OSError) as error:
            raise ValueError(f"{path}: cannot read this image ({error}); remove or replace it") from None

    with tqdm(total=len(samples), desc="pack", unit="image", disable=not progress, dynamic_ncols=True) as bar:
        count = write_records(rec_path, [label for _, label in samples], encoded, bar)
    return count, len({label for _, label in samples})
