"""Score images with a quality model: PyTorch checkpoints (ours or the authors') or ONNX.

Output: one ``name score`` line per readable image (the authors' format), optionally the
embeddings as an ``(N, D)`` float32 ``.npy`` in the same order. The names are the keys that
``crfiqa evaluate`` joins on: paths relative to a scored folder (``id_07/img_0.png``),
``FILE.rec:KEY`` for records, a file list's own lines. Unreadable images are skipped, counted and
reported; images resized or converted to the model's input are counted and reported once.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .data import (
    ImageListDataset,
    RecordDataset,
    SkipLog,
    Skipped,
    collate,
    find_images,
    normalize,
    read_image_list,
)
from .faces import Timings, align_photos, face_table_rows
from .models import load_backbone
from .onnx_export import OnnxQualityModel


class TorchQualityModel:
    """A backbone in eval mode: ``model(images) -> (embedding, quality)`` as numpy."""

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.network = load_backbone(path, self.device)
        self.input_size = self.network.input_size

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        embedding, quality = self.network(images.to(self.device, non_blocking=True))
        return embedding.float().cpu().numpy(), quality.float().cpu().numpy()


def load_quality_model(path: str | os.PathLike, device: str | torch.device | None = None):
    """An ONNX model (``.onnx``) or a PyTorch checkpoint (anything else)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model not found: {path}")
    if os.fspath(path).endswith(".onnx"):
        return OnnxQualityModel(path)
    device = device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    return TorchQualityModel(path, device)


class _RecordImages(Dataset):
    """``(image, FILE.rec:KEY, changes)`` items of a :class:`RecordDataset` (labels are not read)."""

    def __init__(self, records: RecordDataset) -> None:
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        item = self.records.read(index)
        return item if isinstance(item, Skipped) else (item[0], self.records.name(index), item[2])


def open_images(source: str | os.PathLike, image_size: int) -> Dataset:
    """``(image, name, changes)`` items from a folder (recursive), a ``.rec`` file or a file list."""
    source = os.fspath(source)
    if os.path.isdir(source):
        paths = find_images(source)
        if not paths:
            raise ValueError(f"no images found in folder {source}")
        names = [os.path.relpath(path, source).replace(os.sep, "/") for path in paths]
        return ImageListDataset(paths, image_size, names=names)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"no such file or folder: {source}")
    if source.endswith(".rec"):
        return _RecordImages(RecordDataset(source, image_size))
    paths, names = read_image_list(source)
    if not paths:
        raise ValueError(f"file list {source} names no images")
    return ImageListDataset(paths, image_size, names=names)


@dataclass
class Scores:
    names: list[str] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    embeddings: np.ndarray | None = None
    skipped: SkipLog = field(default_factory=SkipLog)
    adjusted: Counter = field(default_factory=Counter)  # "resized from 60×90" → count
    examples: dict[str, str] = field(default_factory=dict)  # change → the first image it happened to

    def warnings(self) -> list[str]:
        """One line per kind of change made to the images (resizing, mode conversion), with a count."""
        lines = []
        for kind in ("resized", "converted"):
            counts = {change: n for change, n in self.adjusted.items() if change.startswith(kind)}
            if counts:
                total = sum(counts.values())
                common = ", ".join(f"{n} {change.split(' ', 1)[1]}" for change, n in Counter(counts).most_common(3))
                first = self.examples[max(counts, key=lambda change: counts[change])]
                lines.append(
                    f"{total} of {len(self.names)} image(s) {kind} to the model's input ({common}; e.g. {first})"
                )
        return lines


def score_images(
    model,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    bgr: bool = False,
    keep_embeddings: bool = False,
    progress: bool = True,
) -> Scores:
    """Quality scores (and optionally embeddings) of every readable ``(image, name[, changes])`` item.

    ``bgr=True`` feeds the channels in BGR order, as the authors' scoring script does by default.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    result, scores, embeddings = Scores(), [], []
    for batch in tqdm(loader, desc="score", unit="batch", disable=not progress, dynamic_ncols=True):
        result.skipped.add(batch.skipped)
        for name, change in batch.adjusted:
            result.adjusted[change] += 1
            result.examples.setdefault(change, name)
        if batch.images is None:
            continue
        images = batch.images.flip(1) if bgr else batch.images
        embedding, quality = model(images)
        result.names += batch.targets
        scores.append(quality.reshape(-1))
        if keep_embeddings:
            embeddings.append(embedding)
    if scores:
        result.scores = np.concatenate(scores)
        result.embeddings = np.concatenate(embeddings) if keep_embeddings else None
    return result


@dataclass
class PhotoScores(Scores):
    """:class:`Scores` of aligned faces (named as their crops), with each photo's faces and the
    time spent reading, detecting, aligning and in the network."""

    face_rows: list[list[str]] = field(default_factory=list)  # the rows of landmarks.csv's format
    timings: Timings = field(default_factory=Timings)
    network_s: float = 0.0


def score_photos(
    model,
    photos: list[tuple[str, str]],
    *,
    faces: str = "largest",
    batch_size: int = 64,
    bgr: bool = False,
    keep_embeddings: bool = False,
    progress: bool = True,
    detector=None,
) -> PhotoScores:
    """Quality scores of the faces in raw photos (``(path, name)`` pairs): each detected and
    aligned in memory at the model's input size, as ``crfiqa align`` would crop it."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    result, scores, embeddings = PhotoScores(), [], []
    pending: list[tuple[str, torch.Tensor]] = []

    def flush() -> None:
        start = time.perf_counter()
        images = torch.stack([image for _, image in pending])
        embedding, quality = model(images.flip(1) if bgr else images)
        result.network_s += time.perf_counter() - start
        result.names.extend(name for name, _ in pending)
        scores.append(quality.reshape(-1))
        if keep_embeddings:
            embeddings.append(embedding)
        pending.clear()

    aligned = align_photos(photos, size=model.input_size, faces=faces, detector=detector, timings=result.timings)
    for photo in tqdm(aligned, desc="score", unit="photo", total=len(photos), disable=not progress, dynamic_ncols=True):
        for face in photo.faces:
            pending.append((face.name, normalize(torch.from_numpy(face.crop).permute(2, 0, 1))))
        result.face_rows += face_table_rows(photo)
        if len(pending) >= batch_size:
            flush()
    if pending:
        flush()
    if scores:
        result.scores = np.concatenate(scores)
        result.embeddings = np.concatenate(embeddings) if keep_embeddings else None
    return result
