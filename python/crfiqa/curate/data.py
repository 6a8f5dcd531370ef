"""The labelled data ``curate`` reads: the training readers (``.rec``, identity folders) and lists.

A list is a text file of ``PATH LABEL`` lines (paths relative to the list's folder, label an
integer class index of the model's head). Items are ``(image, label, index)`` or ``Skipped``;
the index ties each result to its key and lets the contact sheet fetch the image again.
"""

from __future__ import annotations

import os

import torch
from torch.utils.data import Dataset

from ..data import (
    ImageFolderDataset,
    RecordDataset,
    Skipped,
    UnreadableImageError,
    dataset_size,
    load_image,
    to_input_tensor,
)
from .errors import CurateError


class LabelledListDataset(Dataset):
    """``PATH LABEL`` lines; ``name(index)`` is the path as written in the list."""

    def __init__(self, list_file: str, image_size: int) -> None:
        root = os.path.dirname(os.path.abspath(list_file))
        self.names, self.labels = [], []
        with open(list_file, encoding="utf-8") as file:
            for number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                parts = line.rsplit(maxsplit=1)
                if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                    raise CurateError(f"{list_file} line {number}: expected 'PATH LABEL', got {line.strip()!r}")
                self.names.append(parts[0].strip())
                self.labels.append(int(parts[1]))
        if not self.names:
            raise CurateError(f"list {list_file} names no images")
        self.paths = [os.path.join(root, name) for name in self.names]
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.names)

    def name(self, index: int) -> str:
        return self.names[index]

    def __getitem__(self, index: int):
        try:
            image = to_input_tensor(load_image(self.paths[index]), self.image_size)
        except (UnreadableImageError, OSError) as error:
            return Skipped(self.names[index], str(error))
        return image, self.labels[index]


def open_labelled_data(path: str | os.PathLike, image_size: int) -> Dataset:
    """A ``.rec`` (or a folder with ``train.rec``), identity folders, or a ``PATH LABEL`` list."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CurateError(f"data not found: {path}")
    try:
        if path.endswith(".rec") or os.path.isfile(os.path.join(path, "train.rec")):
            return RecordDataset(path, image_size)
        if os.path.isdir(path):
            return ImageFolderDataset(path, image_size)
        return LabelledListDataset(path, image_size)
    except CurateError:
        raise
    except (ValueError, OSError) as error:
        raise CurateError(f"cannot read data {path}: {error}") from None


class Indexed(Dataset):
    """``(image, label, index)`` items of a dataset of ``(image, label)`` items (Skipped passed on)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return dataset_size(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        return item if isinstance(item, Skipped) else (item[0], int(item[1]), index)


def collate_indexed(items: list):
    """``(images or None, labels, indices, skipped)`` of a batch of :class:`Indexed` items."""
    skipped = [item for item in items if isinstance(item, Skipped)]
    kept = [item for item in items if not isinstance(item, Skipped)]
    if not kept:
        return None, None, None, skipped
    images = torch.stack([image for image, _, _ in kept])
    labels = torch.tensor([label for _, label, _ in kept], dtype=torch.int64)
    indices = torch.tensor([index for _, _, index in kept], dtype=torch.int64)
    return images, labels, indices, skipped


def class_names(dataset: Dataset, num_classes: int) -> list[str]:
    """A readable name per class: the identity folder's name where there is one, else the index."""
    identities = getattr(dataset, "identities", None)
    names = [str(index) for index in range(num_classes)]
    if identities:
        names[: min(len(identities), num_classes)] = list(identities)[:num_classes]
    return names
