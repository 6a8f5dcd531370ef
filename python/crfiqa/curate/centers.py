"""Each class center's nearest other center and their cosine: the duplicate-identity signal.

Methods (``--centers``):

* ``exact`` — the centers against themselves through ``crfiqa_kernels.class_stats`` (each center
  is a query labelled with its own class, so NNCCS is the best cosine to any *other* center). Exact;
  C² · D multiply-adds, a block of centers at a time (block × C tile memory only, never C × C).
* ``faiss-flat`` — the same through ``crfiqa_kernels.search`` with an exact ``IndexFlatIP``: exact
  too (up to float32 rounding of the products), the same C² · D work, faiss's BLAS.
* ``faiss-ivf`` — ``IndexIVFFlat`` (``4·√C`` cells, ``nprobe`` of them searched): approximate,
  about C · D · (C · nprobe / nlist) work. A center and its near duplicate lie close together, in
  the same or a neighbouring cell, so close pairs — the ones the duplicate flag looks for — are
  found; the nearest center of an isolated class may be missed (its cosine then under-reads).
* ``auto`` — ``exact`` up to 100,000 classes (minutes on a CPU), ``faiss-ivf`` above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

import crfiqa_kernels as ck

from .settings import METHODS

AUTO_EXACT_LIMIT = 100_000
DESCRIPTIONS = {
    "exact": "exact: the centers against themselves through crfiqa_kernels.class_stats",
    "faiss-flat": "exact: faiss IndexFlatIP over the normalized centers (crfiqa_kernels.search)",
    "faiss-ivf": "approximate: faiss IndexIVFFlat over the normalized centers (crfiqa_kernels.search); "
    "close pairs are found, an isolated class's nearest center may be missed",
}


@dataclass
class CenterNeighbors:
    nearest_class: np.ndarray  # int64 (C,), −1 where the approximate search found none
    cosine: np.ndarray  # float32 (C,), NaN where none was found
    method: str
    exact: bool
    description: str


def resolve_method(method: str, num_classes: int) -> str:
    if method not in METHODS:
        raise ValueError(f"centers method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        return "exact" if num_classes <= AUTO_EXACT_LIMIT else "faiss-ivf"
    return method


def nearest_centers(
    centers: torch.Tensor, method: str = "auto", *, block: int = 2048, nprobe: int = 32, progress: bool = True
) -> CenterNeighbors:
    """For every class, the nearest other class center and the cosine between the two."""
    num_classes = centers.shape[0]
    method = resolve_method(method, num_classes)
    nearest = np.empty(num_classes, np.int64)
    cosine = np.empty(num_classes, np.float32)
    if method == "exact":

        def stats(rows, labels):
            return ck.class_stats(rows, centers, labels)
    else:
        from crfiqa_kernels import search

        index = search.ClassCenterIndex(
            centers,
            method="flat" if method == "faiss-flat" else "ivf",
            nprobe=nprobe,
            use_gpu=None if centers.is_cuda else False,
        )

        def stats(rows, labels):
            return index.class_stats(rows, labels)

    with torch.no_grad():
        for start in tqdm(
            range(0, num_classes, block), desc="centers", unit="block", disable=not progress, dynamic_ncols=True
        ):
            stop = min(start + block, num_classes)
            labels = torch.arange(start, stop, device=centers.device)
            result = stats(centers[start:stop], labels)
            nearest[start:stop] = result.nn_index.cpu().numpy()
            cosine[start:stop] = result.nnccs.cpu().numpy()
    cosine[nearest < 0] = np.nan
    return CenterNeighbors(nearest, cosine, method, method != "faiss-ivf", DESCRIPTIONS[method])
