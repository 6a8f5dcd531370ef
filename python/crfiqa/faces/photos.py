"""Photos as cameras and phones write them, read into ``(H, W, 3)`` uint8 RGB arrays as a viewer
shows them: EXIF orientation applied, grayscale spread to three channels, 16-bit scaled to 8.

Inputs of ``crfiqa align`` and ``crfiqa score --align``: one photo, a folder (searched
recursively) or a file list, each photo with its name (its path relative to the folder, the list's
own line, or a single photo's file name).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..data import IMAGE_EXTENSIONS, UnreadableImageError, find_images
from ..formats import read_image_list

# 16-bit to 8-bit: 65535 / 257 = 255 exactly, so black and white stay black and white.
SIXTEEN_TO_EIGHT = 257.0


def read_photo(path: str | os.PathLike) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 RGB pixels of the photo at ``path``, upright; raises
    :class:`UnreadableImageError` (with the reason) for a file that is not a complete image."""
    try:
        with Image.open(path) as image:
            image.load()
            upright = ImageOps.exif_transpose(image)
            return _to_rgb8(upright)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise UnreadableImageError(reason) from None


def _to_rgb8(image: Image.Image) -> np.ndarray:
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):  # 16-bit grayscale (PNG, TIFF)
        levels = np.asarray(image).astype(np.float64) / SIXTEEN_TO_EIGHT
        gray = np.clip(np.rint(levels), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))  # transparency shows as white
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return np.asarray(image.convert("RGB"))


def list_photos(source: str | os.PathLike) -> list[tuple[str, str]]:
    """``(path, name)`` of the photos of ``source``: a photo, a folder (recursive) or a file list."""
    source = os.fspath(source)
    if os.path.isdir(source):
        paths = find_images(source)
        if not paths:
            raise ValueError(f"no images found in folder {source}")
        return [(path, os.path.relpath(path, source).replace(os.sep, "/")) for path in paths]
    if not os.path.isfile(source):
        raise FileNotFoundError(f"no such file or folder: {source}")
    if source.lower().endswith(IMAGE_EXTENSIONS):
        return [(source, os.path.basename(source))]
    paths, names = read_image_list(source)
    if not paths:
        raise ValueError(f"file list {source} names no images")
    return list(zip(paths, names, strict=True))
