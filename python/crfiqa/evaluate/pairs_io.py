"""The CR-FIQA authors' text formats: ``pair_list.txt`` and ``path score`` quality files.

``pair_list.txt``: one comparison per line, ``name_a name_b type`` (``type`` 1 = mated/genuine,
0 = non-mated/impostor; the authors write ``%05d``, so ``00001`` is 1)::

    00000 00001 00001
    05402 05405 00000

Quality scores: one image per line, ``path score``::

    quality_data/lfw/images/00000.jpg 0.36241477727890015

Names and paths meet through :func:`sample_key`, the file name without folder and extension
(``quality_data/lfw/images/00000.jpg`` → ``00000``), as the authors' scripts join them.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from crfiqa_kernels import write_text_atomically


@dataclass(frozen=True)
class PairList:
    """Comparisons by sample name: ``first[i]`` against ``second[i]``, ``mated[i]`` if the same person."""

    first: tuple[str, ...]
    second: tuple[str, ...]
    mated: np.ndarray

    def __len__(self) -> int:
        return len(self.first)

    @classmethod
    def from_issame(cls, issame) -> "PairList":
        """The pairs of a verification set: images ``2i`` and ``2i + 1``, named ``%05d`` as the authors do."""
        mated = np.asarray(issame, dtype=bool)
        first = tuple(f"{2 * i:05d}" for i in range(len(mated)))
        second = tuple(f"{2 * i + 1:05d}" for i in range(len(mated)))
        return cls(first, second, mated)


def sample_key(path_or_name: str) -> str:
    """The file name without folder and extension: the key that joins pair lists and score files."""
    return os.path.splitext(os.path.basename(path_or_name.strip()))[0]


def read_pair_list(path: str | os.PathLike) -> PairList:
    """Read a ``pair_list.txt`` (blank lines ignored); raises ``ValueError`` naming a bad line."""
    first, second, mated = [], [], []
    for number, line in _lines(path):
        fields = line.split()
        if len(fields) != 3 or fields[2].lstrip("0") not in ("", "1"):
            raise ValueError(f"{path}:{number}: expected 'name_a name_b 0|1', got {line!r}")
        first.append(fields[0])
        second.append(fields[1])
        mated.append(int(fields[2]) == 1)
    if not first:
        raise ValueError(f"{path}: no pairs")
    return PairList(tuple(first), tuple(second), np.array(mated, dtype=bool))


def write_pair_list(path: str | os.PathLike, pairs: PairList) -> None:
    """Write ``pairs`` in the ``pair_list.txt`` format (atomically: a temporary file, then a rename)."""
    lines = (f"{a} {b} {int(m)}\n" for a, b, m in zip(pairs.first, pairs.second, pairs.mated))
    write_text_atomically(path, "".join(lines))


def read_quality_scores(path: str | os.PathLike) -> dict[str, float]:
    """Read a ``path score`` file into ``{sample_key(path): score}``.

    A key listed twice with the same score is kept once; with different scores it is an error, as are
    malformed lines and non-finite scores.
    """
    scores: dict[str, float] = {}
    for number, line in _lines(path):
        fields = line.rsplit(maxsplit=1)
        try:
            score = float(fields[1])
        except (IndexError, ValueError):
            raise ValueError(f"{path}:{number}: expected 'path score', got {line!r}") from None
        if not math.isfinite(score):
            raise ValueError(f"{path}:{number}: score is not finite: {line!r}")
        key = sample_key(fields[0])
        if scores.setdefault(key, score) != score:
            raise ValueError(f"{path}:{number}: {key!r} listed again with another score ({scores[key]} vs {score})")
    if not scores:
        raise ValueError(f"{path}: no scores")
    return scores


def write_quality_scores(path: str | os.PathLike, paths, scores) -> None:
    """Write ``path score`` lines (atomically); ``repr`` of the floats keeps every digit."""
    scores = np.asarray(scores, dtype=np.float64)
    paths = list(paths)
    if scores.ndim != 1 or len(paths) != len(scores):
        raise ValueError(f"paths and scores must pair up one to one, got {len(paths)} and {scores.shape}")
    if any(len(str(p).split()) != 1 for p in paths):
        raise ValueError("paths must be non-empty and free of whitespace")
    write_text_atomically(path, "".join(f"{p} {float(s)!r}\n" for p, s in zip(paths, scores)))


def _lines(path: str | os.PathLike):
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if line.strip():
                yield number, line.strip()
