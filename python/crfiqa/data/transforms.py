"""Image decoding and the network's input normalization; the training flip works on whole batches.

Input convention (the authors'): RGB, ``(x / 255 − 0.5) / 0.5`` ∈ [−1, 1], square ``size × size``.
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError


class UnreadableImageError(ValueError):
    """The bytes or file do not decode to an image."""


def decode_image(data: bytes, *, mode: str | None = "RGB") -> Image.Image:
    """An image from encoded bytes (JPEG, PNG, …), converted to ``mode`` (None: as stored);
    raises :class:`UnreadableImageError`."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.convert(mode) if mode is not None else image.copy()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableImageError(f"cannot decode image: {error}") from error


def load_image(path: str | os.PathLike, *, mode: str | None = "RGB") -> Image.Image:
    """An image from a file (see :func:`decode_image`); raises :class:`UnreadableImageError`."""
    with open(path, "rb") as file:
        data = file.read()
    return decode_image(data, mode=mode)


def adjustments(image: Image.Image, size: int) -> tuple[str, ...]:
    """What :func:`to_input_tensor` changes in ``image``: ``"resized from W×H"``, ``"converted from MODE"``."""
    changes = () if image.size == (size, size) else (f"resized from {image.size[0]}×{image.size[1]}",)
    return changes + (() if image.mode == "RGB" else (f"converted from {image.mode}",))


def encode_jpeg(image: Image.Image | np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of a PIL image or an ``(H, W, 3)`` uint8 array."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def to_input_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """The normalized ``(3, size, size)`` float tensor of an RGB image (resized bilinearly if needed)."""
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image.convert("RGB"), dtype=np.float32)
    return normalize(torch.from_numpy(array).permute(2, 0, 1))


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """Pixel values in [0, 255] → ``(x / 255 − 0.5) / 0.5``."""
    return (pixels.float() / 255.0 - 0.5) / 0.5


def random_horizontal_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image of a ``(B, C, H, W)`` batch left-right with probability 1/2.

    Drawn from ``generator`` in the training process (not in loader workers), so the augmentation
    is reproducible and its state can be checkpointed.
    """
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    return torch.where(flip.to(images.device)[:, None, None, None], images.flip(-1), images)
