"""The wrapper's file formats, read and written in one place.

* ``pair_list.txt`` (the CR-FIQA authors'): ``name_a name_b type`` per line, ``type`` 1 = mated,
  0 = non-mated (the authors write ``%05d``, so ``00001`` is 1).
* Quality scores: ``name score`` per line (what ``crfiqa score`` writes; the authors' format);
  ``name score quality`` with a calibration (``--calibration``), ``quality`` the integer 0–100
  value. Readers take the raw ``score``: a file is three-column when every line ends in a bare
  integer after a float (our raw scores are written with ``repr``: always a ``.``, ``e``, ``inf``
  or ``nan``).
* Faces of photos (``landmarks.csv``, ``SCORES.faces.csv``): CSV with the header
  :data:`FACE_COLUMNS`, one row per photo and face (a photo without one: a row with its status).
* Names of embedding rows: one name per line, in row order; a ``name score`` file in the same
  order (``crfiqa score --output … --embeddings …``) names the rows too.
* Image lists: one image path per line (``path label`` to pack a training set), relative to the
  list's folder unless absolute.
* Embeddings: an ``(N, D)`` float ``.npy``.

A name is what ``crfiqa score`` writes: the path relative to the scored folder
(``id_07/img_0.png``), ``file.rec:KEY`` for a record, or a list's own line. :class:`NameIndex`
finds a name's row: the exact name, else its :func:`sample_key` (file name without folder and
extension, as the authors' scripts join ``00000`` to ``images/00000.jpg``) where that key is unique.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairList:
    """Comparisons by sample name: ``first[i]`` against ``second[i]``, ``mated[i]`` if the same person."""

    first: tuple[str, ...]
    second: tuple[str, ...]
    mated: np.ndarray

    def __len__(self) -> int:
        return len(self.first)

    @classmethod
    def from_issame(cls, issame) -> PairList:
        """The pairs of a verification set: images ``2i`` and ``2i + 1``, named ``%05d`` as the authors do."""
        mated = np.asarray(issame, dtype=bool)
        first = tuple(f"{2 * i:05d}" for i in range(len(mated)))
        second = tuple(f"{2 * i + 1:05d}" for i in range(len(mated)))
        return cls(first, second, mated)


def sample_key(path_or_name: str) -> str:
    """The file name without folder and extension (``a/00000.jpg`` → ``00000``): the authors' join key."""
    return os.path.splitext(os.path.basename(path_or_name.strip()))[0]


def read_pair_list(path: str | os.PathLike) -> PairList:
    """Read a ``pair_list.txt`` (blank lines ignored); raises ``ValueError`` naming a bad line."""
    first, second, mated = [], [], []
    for number, line in _lines(path, "a pair list ('name_a name_b 0|1' lines)"):
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
    """Write ``pairs`` in the ``pair_list.txt`` format (atomically)."""
    from crfiqa_kernels.atomic_files import write_text_atomically

    write_text_atomically(
        path, "".join(f"{a} {b} {int(m)}\n" for a, b, m in zip(pairs.first, pairs.second, pairs.mated, strict=True))
    )


FACE_COLUMNS = (
    "name",
    "face",
    "status",
    "score",
    "x0",
    "y0",
    "x1",
    "y1",
    "left_eye_x",
    "left_eye_y",
    "right_eye_x",
    "right_eye_y",
    "nose_x",
    "nose_y",
    "mouth_left_x",
    "mouth_left_y",
    "mouth_right_x",
    "mouth_right_y",
)


def write_face_table(path: str | os.PathLike, rows) -> None:
    """Write the CSV of :data:`FACE_COLUMNS` rows (atomically, creating the folder)."""
    import csv
    import io

    from crfiqa_kernels.atomic_files import write_text_atomically

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FACE_COLUMNS)
    for row in rows:
        if len(row) != len(FACE_COLUMNS):
            raise ValueError(f"a face row has {len(FACE_COLUMNS)} fields, got {len(row)}: {row!r}")
        writer.writerow(row)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_text_atomically(path, buffer.getvalue())


def read_quality_scores(path: str | os.PathLike) -> dict[str, float]:
    """Read a ``name score`` (or ``name score quality``) file into ``{name: score}``, names as written.

    A name listed twice with the same score is kept once (the authors' files do that); with another
    score it is an error, as are malformed lines and non-finite scores.
    """
    scores: dict[str, float] = {}
    lines = list(_lines(path, "a quality file ('name score' lines)"))
    calibrated = bool(lines) and all(_is_calibrated(line) for _, line in lines)
    for number, line in lines:
        name, score = _name_and_score(line.rsplit(maxsplit=1)[0] if calibrated else line)
        if score is None:
            raise ValueError(f"{path}:{number}: expected 'name score', got {line!r}")
        if not math.isfinite(score):
            raise ValueError(f"{path}:{number}: score is not finite: {line!r}")
        if scores.setdefault(name, score) != score:
            raise ValueError(f"{path}:{number}: {name!r} listed again with another score ({scores[name]} vs {score})")
    if not scores:
        raise ValueError(f"{path}: no scores")
    return scores


def write_quality_scores(path: str | os.PathLike, names, scores, quality=None) -> None:
    """Write ``name score`` lines (atomically, creating the folder); ``repr`` keeps every digit.
    With ``quality`` (integers 0–100, one per name), ``name score quality`` lines."""
    from crfiqa_kernels.atomic_files import write_text_atomically

    scores = np.asarray(scores, dtype=np.float64)
    names = [str(name) for name in names]
    if scores.ndim != 1 or len(names) != len(scores):
        raise ValueError(f"names and scores must pair up one to one, got {len(names)} and {scores.shape}")
    columns = [[f"{float(score)!r}"] for score in scores]
    if quality is not None:
        quality = np.asarray(quality)
        if quality.shape != scores.shape or not np.issubdtype(quality.dtype, np.integer):
            raise ValueError(f"quality must be one integer per score, got {quality.dtype} {quality.shape}")
        columns = [[raw, str(int(value))] for (raw,), value in zip(columns, quality, strict=True)]
    if any(not name.strip() or "\n" in name or name != name.strip() for name in names):
        raise ValueError("names must be non-empty, on one line, without leading or trailing spaces")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_text_atomically(
        path, "".join(" ".join([name, *fields]) + "\n" for name, fields in zip(names, columns, strict=True))
    )


def read_names(path: str | os.PathLike) -> list[str]:
    """The names of embedding rows, one per line; of ``name score`` lines, the name."""
    return [_name_and_score(line)[0] for _, line in _lines(path, "a names file (one name per line)")]


def read_image_list(list_file: str | os.PathLike, root: str | os.PathLike | None = None) -> tuple[list[str], list[str]]:
    """``(paths, names)`` of the images listed in ``list_file``, one per line: ``names`` as written,
    ``paths`` with relative names taken from ``root`` (by default the list's own folder)."""
    if not os.path.isfile(list_file):
        raise FileNotFoundError(f"file list not found: {list_file}")
    root = os.path.dirname(os.path.abspath(list_file)) if root is None else os.fspath(root)
    names = [line for _, line in _lines(list_file, "a file list (one image path per line)")]
    return [os.path.join(root, name) for name in names], names


def read_labelled_list(path: str | os.PathLike) -> list[tuple[str, int]]:
    """``(path, label)`` from ``path label`` lines, paths relative to the list's folder unless absolute."""
    root = os.path.dirname(os.path.abspath(path))
    samples = []
    for number, line in _lines(path, "a list of 'path label' lines"):
        fields = line.rsplit(maxsplit=1)
        if len(fields) != 2 or not fields[1].isdigit():
            raise ValueError(f"{path}:{number}: expected 'path label' with a whole-number label, got {line!r}")
        samples.append((os.path.join(root, fields[0]), int(fields[1])))
    if not samples:
        raise ValueError(f"{path} lists no images")
    return samples


def load_embeddings(path: str | os.PathLike) -> np.ndarray:
    """An ``(N, D)`` float ``.npy`` as float64; raises ``ValueError`` naming the file."""
    try:
        embeddings = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):  # numpy's message may advise allow_pickle: not repeated
        raise ValueError(f"{path} is not a .npy array file (or holds Python objects, which are not loaded)") from None
    if (
        not isinstance(embeddings, np.ndarray)
        or embeddings.ndim != 2
        or not np.issubdtype(embeddings.dtype, np.floating)
    ):
        found = f"{embeddings.dtype} {embeddings.shape}" if isinstance(embeddings, np.ndarray) else "an .npz archive"
        raise ValueError(f"{path}: embeddings must be a 2-D float array, got {found}")
    if not np.isfinite(embeddings).all():
        raise ValueError(f"{path}: embeddings contain NaN or Inf")
    return embeddings.astype(np.float64)


class NameIndex:
    """The row of each name: the exact name, else the unique name with the same :func:`sample_key`."""

    def __init__(self, names: list[str], source: str) -> None:
        self.source = source
        self.rows: dict[str, int] = {}
        self.by_key: dict[str, list[str]] = defaultdict(list)
        for row, name in enumerate(names):
            if self.rows.setdefault(name, row) != row:
                raise ValueError(f"{source}: {name!r} names rows {self.rows[name]} and {row}; each name must be unique")
            self.by_key[sample_key(name)].append(name)

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, name: str, where: str) -> int:
        """The row of ``name`` (found in ``where``); ``ValueError`` saying what to write instead."""
        row = self.find(name, where)
        if row is None:
            raise ValueError(f"{where}: {name!r} is not among the names in {self.source}")
        return row

    def find(self, name: str, where: str) -> int | None:
        """The row of ``name``, None when no name matches; ``ValueError`` when several do."""
        if name in self.rows:
            return self.rows[name]
        matches = self.by_key.get(sample_key(name), [])
        if len(matches) == 1:
            return self.rows[matches[0]]
        if not matches:
            return None
        shown = ", ".join(repr(match) for match in matches[:3]) + (" …" if len(matches) > 3 else "")
        raise ValueError(
            f"{where}: {name!r} matches {len(matches)} names in {self.source} ({shown}); "
            f"write the full name as {self.source} has it"
        )


def _name_and_score(line: str) -> tuple[str, float | None]:
    fields = line.rsplit(maxsplit=1)
    try:
        return fields[0], float(fields[1])
    except (IndexError, ValueError):
        return line, None


def _is_calibrated(line: str) -> bool:
    """Whether ``line`` reads ``name score quality``: a bare integer after a float."""
    fields = line.rsplit(maxsplit=2)
    return len(fields) == 3 and fields[2].isdigit() and _name_and_score(" ".join(fields[:2]))[1] is not None


def _lines(path: str | os.PathLike, expected: str):
    """``(line number, stripped line)`` of the non-blank lines of a UTF-8 text file."""
    try:
        with open(path, encoding="utf-8") as file:
            for number, line in enumerate(file, start=1):
                if line.strip():
                    yield number, line.strip()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text file; expected {expected}") from None
