"""The inputs of an evaluation: embeddings, the pairs compared and each method's quality per row.

Pairs and quality files name images; a name becomes an embedding row through ``--names``
(:class:`crfiqa.formats.NameIndex`: exact name, else a unique file name without folder and
extension) or, without ``--names``, as a row number (``00012`` = row 12, the authors' convention).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..formats import (
    NameIndex,
    load_embeddings,
    read_names,
    read_pair_list,
    read_quality_scores,
    sample_key,
)


@dataclass(frozen=True)
class Inputs:
    embeddings: np.ndarray  # (N, D) float64
    first: np.ndarray  # (M,) row of each pair's first image
    second: np.ndarray
    mated: np.ndarray  # (M,) bool
    quality: dict[str, np.ndarray]  # method → (N,) float64, higher = better


def parse_methods(specs: list[str]) -> dict[str, str]:
    """``{method: path}`` from ``[NAME=]PATH`` specs (NAME defaults to the file name without extension)."""
    methods: dict[str, str] = {}
    for spec in specs:
        name, separator, path = spec.partition("=")
        if not separator:
            name, path = os.path.splitext(os.path.basename(spec))[0], spec
        if not name or not path:
            raise ValueError(f"--quality expects [NAME=]PATH, got {spec!r}")
        if name in methods:
            raise ValueError(f"two quality files for method {name!r}: give them distinct NAME= prefixes")
        methods[name] = path
    return methods


def load_inputs(
    embeddings: str, pairs: str, names: str | None, methods: dict[str, str], lower_is_better: list[str]
) -> Inputs:
    """Read and join every input file; ``ValueError`` naming the file (and line) for anything wrong."""
    unknown = set(lower_is_better) - set(methods)
    if unknown:
        raise ValueError(f"--lower-is-better names no --quality method: {sorted(unknown)}")
    files = [("embeddings", embeddings), ("pairs", pairs), ("names", names)]
    files += [(f"quality file of {name!r}", path) for name, path in methods.items()]
    for label, path in files:
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(f"{label} file not found: {path}")
    vectors = load_embeddings(embeddings)
    rows = _Rows(len(vectors), NameIndex(read_names(names), names) if names else None)
    first, second, mated = _load_pairs(pairs, rows)
    quality = {}
    for name, path in methods.items():
        sign = -1.0 if name in lower_is_better else 1.0
        quality[name] = sign * _load_quality(path, rows, first, second)
    return Inputs(vectors, first, second, mated, quality)


class _Rows:
    """Names → embedding rows: through ``--names`` when given, else names are row numbers."""

    def __init__(self, count: int, index: NameIndex | None) -> None:
        if index is not None and len(index) != count:
            raise ValueError(f"{index.source}: {len(index)} names for {count} embedding rows")
        self.count, self.index = count, index

    def of(self, name: str, where: str) -> int:
        row = self.find(name, where)
        if row is None and self.index is not None:
            raise ValueError(f"{where}: {name!r} is not among the names in {self.index.source}")
        if row is None:
            raise ValueError(
                f"{where}: {name!r} is not a row number below {self.count} "
                "(give --names to name the rows, e.g. the scores file written with the embeddings)"
            )
        return row

    def find(self, name: str, where: str) -> int | None:
        """The row of ``name``, or None (an image without embedding); ``ValueError`` if ambiguous."""
        if self.index is not None:
            return self.index.find(name, where)
        key = sample_key(name)
        return int(key) if key.isdigit() and int(key) < self.count else None


def _load_pairs(path: str, rows: _Rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if path.endswith(".npz"):
        return _load_pair_rows(path, rows.count)
    pairs = read_pair_list(path)
    first = np.array([rows.of(name, path) for name in pairs.first], dtype=np.int64)
    second = np.array([rows.of(name, path) for name in pairs.second], dtype=np.int64)
    return first, second, pairs.mated


def _load_pair_rows(path: str, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "pairs" not in archive or "mated" not in archive:
                raise ValueError(f"{path}: a pairs .npz needs arrays 'pairs' (M, 2) and 'mated' (M,)")
            pairs, mated = archive["pairs"], archive["mated"]
    except (OSError, EOFError, AttributeError, TypeError):
        raise ValueError(f"{path} is not an .npz archive of 'pairs' and 'mated'") from None
    if pairs.ndim != 2 or pairs.shape[1] != 2 or not np.issubdtype(pairs.dtype, np.integer):
        raise ValueError(f"{path}: 'pairs' must be an (M, 2) integer array, got {pairs.dtype} {pairs.shape}")
    if pairs.size and (pairs.min() < 0 or pairs.max() >= count):
        raise ValueError(f"{path}: row indices must lie in [0, {count})")
    if mated.shape != (len(pairs),):
        raise ValueError(f"{path}: 'mated' must have shape ({len(pairs)},), got {mated.shape}")
    return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64), mated.astype(bool)


def _load_quality(path: str, rows: _Rows, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    if path.endswith(".npy"):
        try:
            quality = np.load(path, allow_pickle=False).astype(np.float64)
        except (ValueError, OSError, EOFError):
            raise ValueError(f"{path} is not a .npy array of scores") from None
        if quality.shape != (rows.count,):
            raise ValueError(f"{path}: expected one score per embedding row ({rows.count},), got {quality.shape}")
    else:
        quality = np.full(rows.count, np.nan)
        for name, score in read_quality_scores(path).items():
            row = rows.find(name, path)  # images without an embedding row are not compared
            if row is None:
                continue
            if np.isfinite(quality[row]) and quality[row] != score:
                raise ValueError(f"{path}: {name!r} gives row {row} a second, different score")
            quality[row] = score
    used = np.unique(np.concatenate([first, second]))
    missing = used[~np.isfinite(quality[used])]
    if missing.size:
        raise ValueError(
            f"{path}: no finite score for {missing.size} compared images, e.g. rows {missing[:5].tolist()}"
        )
    return quality
