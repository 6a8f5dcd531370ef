"""Nearest class centers for millions of classes through faiss: CCS / NNCCS and 1:N identification.

    from crfiqa_kernels import search
    index = search.ClassCenterIndex(head.weight)               # exact inner product (IndexFlatIP)
    stats = index.class_stats(embeddings, labels)              # same definitions as class_stats
    approx = search.ClassCenterIndex(head.weight, method="ivf", nprobe=32)
    approx.recall(queries, k=10)                               # measured against exact search

Centers and queries are L2-normalized (norm floored at 1e-12, as in the op), so inner products are
the cosines ``c_ij`` of DESIGN §2, clamped to ``[-1, 1]``. Rankings put the higher cosine first and
the lower class index first among equal cosines, so with ``method="flat"`` the results are exact and
agree with :func:`crfiqa_kernels.class_stats` up to float32 rounding of the products.
``method="ivf"`` (``IndexIVFFlat``: ``nlist`` k-means cells, ``nprobe`` of them searched) is
approximate: a nearest center outside the probed cells is missed; :meth:`ClassCenterIndex.recall`
measures how often. It suits 1:N identification, where a probe lies close to its own center; the
nearest *negative* center (NNCCS) is usually far from the query in 512-D and often outside the
probed cells, so use ``"flat"`` when NNCCS must be exact. faiss-gpu is used when it is installed
and sees a GPU, faiss-cpu otherwise.

The index is a snapshot of the centers at construction; CCS (the cosine to the own center) is read
from ``weight`` itself, which the index keeps a reference to: rebuild the index after changing it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .constants import NORM_FLOOR
from .results import ClassStats

METHODS = ("flat", "ivf")
_BLOCK_ROWS = 16_384  # rows normalized, added or brute-force searched at a time
_TRAIN_POINTS_PER_CELL = 64


def _faiss():
    try:
        import faiss
    except ImportError as error:  # faiss is an optional dependency of crfiqa_kernels
        raise ImportError("crfiqa_kernels.search needs faiss: pip install faiss-cpu (or faiss-gpu)") from error
    return faiss


def gpu_available() -> bool:
    """Whether the installed faiss has GPU support and sees at least one GPU."""
    faiss = _faiss()
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _as_rows(name: str, matrix) -> np.ndarray | torch.Tensor:
    if isinstance(matrix, torch.Tensor):
        if not matrix.dtype.is_floating_point:
            raise TypeError(f"{name} must be a float tensor, got {matrix.dtype}")
    elif isinstance(matrix, np.ndarray):
        if not np.issubdtype(matrix.dtype, np.floating):
            raise TypeError(f"{name} must be a float array, got {matrix.dtype}")
    else:
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(matrix).__name__}")
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D (rows, D) matrix, got shape {tuple(matrix.shape)}")
    return matrix


def _normalized(name: str, rows) -> np.ndarray:
    """float32 rows divided by ``max(‖row‖, 1e-12)``, computed in float64 a block of rows at a time."""
    normalized = np.empty(tuple(rows.shape), dtype=np.float32)
    for start in range(0, rows.shape[0], _BLOCK_ROWS):
        block = rows[start : start + _BLOCK_ROWS]
        if isinstance(block, torch.Tensor):
            block = block.detach().to("cpu", torch.float64).numpy()
        block = np.asarray(block, dtype=np.float64)
        if not np.isfinite(block).all():
            raise ValueError(f"{name} contains NaN or Inf")
        norms = np.maximum(np.linalg.norm(block, axis=1, keepdims=True), NORM_FLOOR)
        normalized[start : start + len(block)] = block / norms
    return normalized


def _rank(scores: np.ndarray, classes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` of each row's candidates: higher score first, lower class index first on ties.

    Missing candidates (class −1, as faiss reports them) go last.
    """
    missing = classes < 0
    key_score = np.where(missing, -np.inf, scores)
    key_class = np.where(missing, np.iinfo(np.int64).max, classes)
    order = np.lexsort((key_class, -key_score), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(classes, order, 1)


def _check_nprobe(nprobe) -> None:
    if isinstance(nprobe, bool) or not isinstance(nprobe, int) or nprobe < 1:
        raise ValueError(f"nprobe must be a positive int, got {nprobe!r}")


class ClassCenterIndex:
    """A faiss index over the L2-normalized rows of ``weight`` (C, D): one row per class.

    ``method``: ``"flat"`` (exact ``IndexFlatIP``) or ``"ivf"`` (``IndexIVFFlat`` with ``nlist``
    cells, default ``4·√C`` capped so that each cell has ≥ 39 centers to train on, and ``nprobe``
    cells searched). ``use_gpu``: ``None`` picks the GPU when :func:`gpu_available`, ``True``
    requires it, ``False`` stays on the CPU.
    """

    def __init__(
        self,
        weight,
        *,
        method: str = "flat",
        nlist: int | None = None,
        nprobe: int = 32,
        use_gpu: bool | None = None,
        seed: int = 0,
    ) -> None:
        faiss = _faiss()
        self._weight = _as_rows("weight", weight)
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        num_classes, dim = self._weight.shape
        if num_classes < 2:
            raise ValueError(f"weight must hold at least 2 classes, got {num_classes}")
        if use_gpu and not gpu_available():
            raise RuntimeError("use_gpu=True but faiss has no GPU support or sees no GPU")
        self.method, self.num_classes, self.dim = method, num_classes, dim
        self.on_gpu = gpu_available() if use_gpu is None else bool(use_gpu)

        self.nlist: int | None = None  # None for "flat"
        self._nprobe: int | None = None
        if method == "flat":
            index = faiss.IndexFlatIP(dim)
        else:
            cells = nlist if nlist is not None else max(1, min(int(4 * math.sqrt(num_classes)), num_classes // 39))
            if isinstance(cells, bool) or not isinstance(cells, int) or not 1 <= cells <= num_classes:
                raise ValueError(f"nlist must be an int in [1, {num_classes}], got {nlist!r}")
            self.nlist = cells
            _check_nprobe(nprobe)
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
            sample_size = min(num_classes, self.nlist * _TRAIN_POINTS_PER_CELL)
            sample = np.random.default_rng(seed).choice(num_classes, sample_size, replace=False)
            index.cp.seed = seed
            index.train(self._normalized_centers(np.sort(sample)))
        if self.on_gpu:
            self._gpu_resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, index)
        for start in range(0, num_classes, _BLOCK_ROWS):
            index.add(self._normalized_centers(np.arange(start, min(start + _BLOCK_ROWS, num_classes))))
        self._index = index
        if method == "ivf":
            self.nprobe = nprobe

    @property
    def nprobe(self) -> int | None:
        """IVF cells searched per query (``None`` for ``"flat"``); may be changed without rebuilding."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if self.nlist is None:
            raise ValueError("nprobe applies to method='ivf' only")
        _check_nprobe(value)
        faiss = _faiss()
        space = faiss.GpuParameterSpace() if self.on_gpu else faiss.ParameterSpace()
        self._nprobe = min(value, self.nlist)
        space.set_index_parameter(self._index, "nprobe", self._nprobe)

    def _normalized_centers(self, classes: np.ndarray) -> np.ndarray:
        if isinstance(self._weight, torch.Tensor):
            return _normalized("weight", self._weight[torch.as_tensor(classes, device=self._weight.device)])
        return _normalized("weight", self._weight[classes])

    def _queries(self, embeddings) -> np.ndarray:
        rows = _as_rows("embeddings", embeddings)
        if rows.shape[1] != self.dim:
            raise ValueError(f"embeddings have size {rows.shape[1]} but the centers have {self.dim}")
        return _normalized("embeddings", rows)

    def _search_normalized(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        # Ask for one more than needed: where the extra one ties with the k-th, a center with a lower
        # index may tie beyond it, so those rows are searched again with twice as many.
        scores = np.empty((len(queries), k), dtype=np.float32)
        classes = np.empty((len(queries), k), dtype=np.int64)
        rows, width = np.arange(len(queries)), k + 1
        while rows.size:
            width = min(width, self.num_classes)
            found_scores, found_classes = self._index.search(queries[rows], width)
            found_classes = found_classes.astype(np.int64)
            if width < self.num_classes:
                unsettled = (found_classes[:, -1] >= 0) & (found_scores[:, -1] == found_scores[:, k - 1])
            else:
                unsettled = np.zeros(len(rows), dtype=bool)
            best_scores, best_classes = _rank(found_scores, found_classes, k)
            scores[rows[~unsettled]], classes[rows[~unsettled]] = best_scores[~unsettled], best_classes[~unsettled]
            rows, width = rows[unsettled], 2 * width
        return np.clip(scores, -1.0, 1.0), classes

    def search(self, embeddings, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest classes of each embedding: cosines ``(B, k)`` float32 and classes ``(B, k)``.

        Best first, the lower class index first on equal cosines; with ``method="ivf"`` a row may hold
        fewer than ``k`` found classes, the rest marked −1 (cosine −inf is then clipped to −1).
        """
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.num_classes:
            raise ValueError(f"k must be an int in [1, {self.num_classes}], got {k!r}")
        return self._search_normalized(self._queries(embeddings), k)

    def class_stats(self, embeddings, labels=None) -> ClassStats:
        """CCS / NNCCS / nn_index / top class, with the definitions of :func:`crfiqa_kernels.class_stats`.

        With labels (−1 = ignored row): ``ccs`` the cosine to the own center (NaN for ignored rows),
        ``nnccs`` the best cosine among the other classes, ``nn_index`` its class (the lowest on ties),
        ``top_class`` the best class of all (the lowest on ties). Without labels the top class plays the
        own class. Returned as CPU tensors (float32, int64).
        With ``method="ivf"`` a row whose probed cells hold no other class gets NaN and −1.
        """
        queries = self._queries(embeddings)
        top_scores, top_classes = self._search_normalized(queries, 2)
        top_scores = np.where(top_classes >= 0, top_scores, np.nan).astype(np.float32)
        if labels is None:
            return self._to_stats(top_scores[:, 0], top_scores[:, 1], top_classes[:, 1], top_classes[:, 0])

        labels = self._labels(labels, len(queries))
        own = labels >= 0
        ccs = np.full(len(queries), np.nan, dtype=np.float32)
        if own.any():
            own_centers = self._normalized_centers(labels[own])
            ccs[own] = np.clip(np.einsum("ij,ij->i", queries[own], own_centers), -1.0, 1.0)
        # Where the own class is among the two ranked ones, its cosine is taken from the same search,
        # so that CCS and NNCCS order exactly as the ranking does.
        for rank in (0, 1):
            ranked_own = own & (top_classes[:, rank] == labels)
            ccs[ranked_own] = top_scores[ranked_own, rank]
        # The runner-up is the first ranked class that is not the label; the top class is the first.
        second = top_classes[:, 0] == labels
        nnccs = np.where(second, top_scores[:, 1], top_scores[:, 0])
        nn_index = np.where(second, top_classes[:, 1], top_classes[:, 0])
        return self._to_stats(ccs, nnccs, nn_index, top_classes[:, 0])

    def identification_rate(self, probes, labels, ranks=(1, 5, 10)) -> dict[int, float]:
        """Closed-set 1:N identification: the fraction of probes whose class is among their ``r`` best."""
        ranks = sorted({int(r) for r in ranks})
        if not ranks or ranks[0] < 1 or ranks[-1] > self.num_classes:
            raise ValueError(f"ranks must lie in [1, {self.num_classes}], got {ranks}")
        queries = self._queries(probes)
        labels = self._labels(labels, len(queries))
        if (labels < 0).any():
            raise ValueError("labels must all be class indices (no -1) for identification")
        _, classes = self._search_normalized(queries, ranks[-1])
        hit_rank = np.where((classes == labels[:, None]).any(1), (classes == labels[:, None]).argmax(1), ranks[-1])
        return {r: float(np.mean(hit_rank < r)) for r in ranks}

    def recall(self, queries, k: int = 10) -> float:
        """k-recall@k against exact search: the mean share of each query's exact ``k`` nearest classes
        that this index returns among its ``k``. Exact search here is a blocked brute force over the
        centers (no second index in memory); 1.0 for ``method="flat"`` up to exact ties."""
        _, found = self.search(queries, k)
        exact = self._exact_search(self._queries(queries), k)
        hits = [np.intersect1d(f, e).size for f, e in zip(found, exact, strict=True)]
        return float(np.mean(hits) / k)

    def _exact_search(self, queries: np.ndarray, k: int) -> np.ndarray:
        faiss = _faiss()
        best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
        best_classes = np.full((len(queries), 0), -1, dtype=np.int64)
        for start in range(0, self.num_classes, _BLOCK_ROWS):
            classes = np.arange(start, min(start + _BLOCK_ROWS, self.num_classes))
            width = min(k, len(classes))
            centers = self._normalized_centers(classes)
            scores, found = faiss.knn(queries, centers, width, metric=faiss.METRIC_INNER_PRODUCT)
            best_scores, best_classes = _rank(
                np.concatenate([best_scores, scores], 1), np.concatenate([best_classes, found + start], 1), k
            )
        return best_classes

    def _labels(self, labels, rows: int) -> np.ndarray:
        if isinstance(labels, torch.Tensor):
            labels = labels.detach().cpu().numpy()
        labels = np.asarray(labels)
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"labels must be integer class indices, got {labels.dtype}")
        if labels.shape != (rows,):
            raise ValueError(f"labels must have shape ({rows},), got {labels.shape}")
        if labels.size and (labels.min() < -1 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [-1, {self.num_classes - 1}]")
        return labels.astype(np.int64)

    @staticmethod
    def _to_stats(ccs, nnccs, nn_index, top_class) -> ClassStats:
        def tensor(array, dtype):
            return torch.from_numpy(np.ascontiguousarray(array, dtype=dtype))

        return ClassStats(
            tensor(ccs, np.float32), tensor(nnccs, np.float32), tensor(nn_index, np.int64), tensor(top_class, np.int64)
        )
