"""One streaming pass over the data: per-sample CCS, NNCCS, nearest other class, CR and quality.

Each batch goes through the backbone (embedding, quality) and ``crfiqa_kernels.class_stats``
against every class center (forward only, tiled over the classes: never batch × classes). What is
kept is O(samples) (five numbers per sample) and O(classes) (count, CCS sum, best sample);
embeddings are dropped after their batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

import crfiqa_kernels as ck

from ..data import SkipLog, dataset_size
from .data import Indexed, collate_indexed
from .errors import CurateError
from .keys import sample_key
from .model import CurateModel


@dataclass
class SampleStats:
    """Arrays over the readable samples, in dataset order; ``index`` is the dataset index."""

    index: np.ndarray  # int64
    label: np.ndarray  # int64
    ccs: np.ndarray  # float32
    nnccs: np.ndarray  # float32
    nearest_class: np.ndarray  # int64
    cr: np.ndarray  # float32
    quality: np.ndarray  # float32
    skipped: SkipLog = field(default_factory=SkipLog)

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class ClassTotals:
    """Per class: sample count, mean CCS, and its best sample (highest predicted quality among the
    samples nearer their own center than any other, CCS > NNCCS; −1 if none), the one the contact
    sheet shows for the class. (The highest-CCS sample was often a blurred or noisy one; the highest
    quality one, a clean image of another identity carrying a wrong label.)"""

    count: np.ndarray  # int64 (C,)
    mean_ccs: np.ndarray  # float64 (C,), NaN for a class without samples
    typical_sample: np.ndarray  # int64 (C,), dataset index


def _check_labels(labels: torch.Tensor, indices: torch.Tensor, dataset: Dataset, num_classes: int) -> None:
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        first = int(bad.nonzero()[0, 0])
        raise CurateError(
            f"sample {sample_key(dataset, int(indices[first]))} has label {int(labels[first])}, beyond the model's "
            f"{num_classes} classes (0 … {num_classes - 1}): is this the data the model was trained on?"
        )


def sample_stats(
    model: CurateModel,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    num_workers: int = 0,
    progress: bool = True,
    name: str = "the data",
) -> tuple[SampleStats, ClassTotals]:
    """Stream ``dataset`` (items ``(image, label)``) once; see the module docstring. ``name`` (the
    data's path) opens the error messages."""
    if dataset_size(dataset) == 0:
        raise CurateError(f"{name} holds no samples")
    declared = getattr(dataset, "num_identities", None)
    if declared is not None and declared > model.num_classes:
        raise CurateError(f"{name} has {declared} identities but the model's head only {model.num_classes} classes")
    known = getattr(dataset, "labels", None)  # labels known before reading any image (lists): check them first
    if known is not None and len(known):
        known = torch.as_tensor(np.asarray(known))
        _check_labels(known, torch.arange(len(known)), dataset, model.num_classes)
    count = dataset_size(dataset)
    index = np.full(count, -1, np.int64)
    label = np.zeros(count, np.int64)
    ccs, nnccs, cr, quality = (np.zeros(count, np.float32) for _ in range(4))
    nearest = np.zeros(count, np.int64)
    num_classes = model.num_classes
    class_count = np.zeros(num_classes, np.int64)
    ccs_sum = np.zeros(num_classes, np.float64)
    best_quality = np.full(num_classes, -np.inf, np.float64)
    typical = np.full(num_classes, -1, np.int64)
    skipped = SkipLog()
    device = model.centers.device
    loader = DataLoader(Indexed(dataset), batch_size=batch_size, num_workers=num_workers, collate_fn=collate_indexed)
    filled = 0
    with torch.no_grad():
        for images, labels, indices, batch_skipped in tqdm(
            loader, desc="curate", unit="batch", disable=not progress, dynamic_ncols=True
        ):
            skipped.add(batch_skipped)
            if images is None:
                continue
            _check_labels(labels, indices, dataset, num_classes)
            embedding, predicted = model.backbone(images.to(device))
            labels = labels.to(device)
            stats = ck.class_stats(embedding.float(), model.centers, labels)
            batch_cr = ck.cr_target(stats.ccs, stats.nnccs, model.cr_formula)
            rows = slice(filled, filled + len(labels))
            filled += len(labels)
            index[rows] = indices.numpy()
            label[rows] = labels.cpu().numpy()
            ccs[rows] = stats.ccs.cpu().numpy()
            nnccs[rows] = stats.nnccs.cpu().numpy()
            nearest[rows] = stats.nn_index.cpu().numpy()
            cr[rows] = batch_cr.cpu().numpy()
            quality[rows] = predicted.float().reshape(-1).cpu().numpy()
            _add_to_classes(
                label[rows],
                ccs[rows],
                nnccs[rows],
                quality[rows],
                index[rows],
                class_count,
                ccs_sum,
                best_quality,
                typical,
            )
    if filled == 0:
        raise CurateError(
            f"{name}: none of the {count} samples could be read ({skipped.items[0].name}: {skipped.items[0].reason})"
        )
    keep = slice(0, filled)
    samples = SampleStats(
        index[keep], label[keep], ccs[keep], nnccs[keep], nearest[keep], cr[keep], quality[keep], skipped
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_ccs = np.where(class_count > 0, ccs_sum / np.maximum(class_count, 1), np.nan)
    return samples, ClassTotals(class_count, mean_ccs, typical)


def _add_to_classes(labels, ccs, nnccs, quality, indices, class_count, ccs_sum, best_quality, typical) -> None:
    np.add.at(class_count, labels, 1)
    np.add.at(ccs_sum, labels, ccs.astype(np.float64))
    own = ccs > nnccs
    labels, quality, indices = labels[own], quality[own], indices[own]
    # The batch's best sample per class (highest quality, then the lowest index), kept if it beats the best so far.
    if not len(labels):
        return
    order = np.lexsort((indices, -quality.astype(np.float64), labels))
    first = np.ones(len(order), bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    winners = order[first]
    classes = labels[winners]
    better = quality[winners] > best_quality[classes]
    best_quality[classes[better]] = quality[winners][better]
    typical[classes[better]] = indices[winners][better]
