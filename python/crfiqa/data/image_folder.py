"""Datasets of image files: a folder per identity (training) and a flat list of paths (scoring)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from .skipping import Skipped
from .transforms import UnreadableImageError, adjustments, load_image, to_input_tensor

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def find_images(root: str | os.PathLike) -> list[str]:
    """Every file under ``root`` (recursively) with an image extension, sorted."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"folder not found: {root}")
    found = []
    for folder, _, files in os.walk(root):
        found += [os.path.join(folder, name) for name in files if name.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(found)


def _read(path: str, size: int):
    try:
        return to_input_tensor(load_image(path), size)
    except (UnreadableImageError, OSError) as error:
        return Skipped(path, str(error))


class ImageListDataset(torch.utils.data.Dataset):
    """Items ``(normalized (3, size, size) tensor, name, changes)`` (the name defaults to the path;
    ``changes`` says how the image was resized or converted, see :func:`adjustments`), or
    :class:`Skipped` for an unreadable file."""

    def __init__(self, paths: Sequence[str], image_size: int = 112, names: Sequence[str] | None = None) -> None:
        if not paths:
            raise ValueError("paths is empty: no images to read")
        if names is not None and len(names) != len(paths):
            raise ValueError(f"names has {len(names)} entries for {len(paths)} paths")
        self.paths, self.image_size = list(paths), image_size
        self.names = list(paths) if names is None else list(names)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            image = load_image(self.paths[index], mode=None)
        except (UnreadableImageError, OSError) as error:
            return Skipped(self.names[index], str(error))
        return to_input_tensor(image, self.image_size), self.names[index], adjustments(image, self.image_size)


class ImageFolderDataset(torch.utils.data.Dataset):
    """``root/<identity>/<image>``: items ``(normalized tensor, label)`` with labels in sorted
    identity-folder order, or :class:`Skipped` for an unreadable file."""

    def __init__(self, root: str | os.PathLike, image_size: int = 112) -> None:
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"folder not found: {root}")
        self.identities = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
        self.samples = [
            (path, label)
            for label, identity in enumerate(self.identities)
            for path in find_images(os.path.join(root, identity))
        ]
        if not self.samples:
            raise ValueError(f"no images found in identity folders under {root}")
        self.root, self.image_size = root, image_size
        self.num_identities = len(self.identities)

    def __len__(self) -> int:
        return len(self.samples)

    def name(self, index: int) -> str:
        """The image's path relative to the root, ``/``-separated (``id_07/img_0.png``): the key
        ``crfiqa score`` writes for the same image when it scores the root folder."""
        return os.path.relpath(self.samples[index][0], self.root).replace(os.sep, "/")

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        image = _read(path, self.image_size)
        return image if isinstance(image, Skipped) else (image, label)
