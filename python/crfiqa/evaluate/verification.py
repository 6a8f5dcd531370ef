"""insightface verification sets (``lfw.bin``, ``agedb_30.bin`` …): safe reading, flip embeddings, accuracy.

A ``.bin`` file is a pickle of ``(bins, issame)``: ``bins`` the encoded images (JPEG/PNG bytes),
images ``2i`` and ``2i + 1`` forming pair ``i``, and ``issame`` one bool per pair. Unpickling is
restricted to what that needs — bytes, str, lists, tuples, bools and ints — so a crafted file
cannot run code: any reference to a global (a class, a function) is refused before it is
resolved. Images stay encoded in memory and are decoded batch by batch, so several sets fit in a
few hundred megabytes.
"""

from __future__ import annotations

import codecs
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from sklearn.model_selection import KFold
from sklearn.preprocessing import normalize as l2_normalize

from crfiqa.data import decode_image, to_input_tensor

from .validation import as_mated

DEFAULT_THRESHOLDS = np.arange(0.0, 4.0, 0.01)  # squared L2 distance between unit vectors ∈ [0, 4]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle refers to a global (class or function): refused without resolving it."""


class _VerificationUnpickler(pickle.Unpickler):
    """Builds only containers and scalars; every ``find_class`` request is refused.

    The single exception is how Python 3 writes ``bytes`` with pickle protocols 0–2:
    ``_codecs.encode(text, 'latin1')``. That global is replaced by a function that only re-encodes
    a str as latin-1 and refuses anything else.
    """

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        raise UnsafePickleError(f"refusing to load global {module}.{name} from a verification set")


def _latin1_bytes(text, encoding="utf-8"):
    if not isinstance(text, str) or encoding != "latin1":
        raise UnsafePickleError("refusing _codecs.encode other than str → latin-1 bytes")
    return codecs.encode(text, "latin1")


@dataclass(frozen=True)
class VerificationSet:
    """The pairs of a verification set, images still encoded; ``len`` is the number of images."""

    name: str
    encoded: tuple[bytes, ...]
    issame: np.ndarray

    def __len__(self) -> int:
        return len(self.encoded)

    def image(self, index: int):
        """Image ``index`` decoded to an RGB ``PIL.Image``."""
        return decode_image(self.encoded[index])

    def batches(self, batch_size: int = 64, size: int = 112) -> Iterator[torch.Tensor]:
        """Normalized ``(B, 3, size, size)`` float batches in image order, decoded as they are needed."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            yield torch.stack([to_input_tensor(self.image(i), size) for i in range(start, stop)])


def read_verification_bin(path: str | os.PathLike, *, name: str | None = None) -> VerificationSet:
    """Read an insightface ``.bin`` verification set through the restricted unpickler.

    Raises :class:`UnsafePickleError` for a pickle that refers to any class or function, and
    ``ValueError`` when the content is not ``(list of bytes, list of bools)`` with two images per pair.
    """
    with open(path, "rb") as file:
        try:
            content = _VerificationUnpickler(file, encoding="bytes").load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
            raise ValueError(f"{path}: not a readable verification set: {error}") from error
    if not isinstance(content, (tuple, list)) or len(content) != 2:
        raise ValueError(f"{path}: expected a pickled (bins, issame) pair")
    bins, issame = content
    if not isinstance(bins, (list, tuple)) or not all(isinstance(b, (bytes, bytearray)) for b in bins):
        raise ValueError(f"{path}: the images must be a list of encoded bytes")
    if not isinstance(issame, (list, tuple)) or not all(isinstance(s, (bool, int)) for s in issame):
        raise ValueError(f"{path}: issame must be a list of bools")
    if len(bins) != 2 * len(issame) or not issame:
        raise ValueError(f"{path}: {len(bins)} images for {len(issame)} pairs (expected two per pair)")
    mated = as_mated("issame", np.array([int(s) for s in issame]))
    return VerificationSet(name or os.path.splitext(os.path.basename(path))[0], tuple(bytes(b) for b in bins), mated)


@torch.no_grad()
def embed_verification_set(
    model: Callable[[torch.Tensor], torch.Tensor],
    dataset: VerificationSet,
    *,
    batch_size: int = 64,
    size: int = 112,
    device: str | torch.device = "cpu",
    flip: bool = True,
) -> np.ndarray:
    """Embeddings of every image, ``(len(dataset), D)`` float32, in image order.

    ``model`` maps a normalized batch to embeddings, or to a tuple whose first item is the
    embeddings (crfiqa's :class:`~crfiqa.models.IResNet` returns ``(embedding, quality)``). With
    ``flip`` each embedding is the sum of the image's and its left-right mirror's (insightface's
    flip test). Embeddings are returned unnormalized. A ``torch.nn.Module`` is put in eval mode.
    """
    if isinstance(model, torch.nn.Module):
        model.eval()

    def embed(images: torch.Tensor) -> torch.Tensor:
        out = model(images)
        return (out[0] if isinstance(out, (tuple, list)) else out).float()

    chunks = []
    for batch in dataset.batches(batch_size, size):
        batch = batch.to(device)
        features = embed(batch)
        if flip:
            features = features + embed(batch.flip(-1))
        chunks.append(features.cpu().numpy())
    return np.concatenate(chunks).astype(np.float32, copy=False)


class VerificationAccuracy(NamedTuple):
    """k-fold verification accuracy: mean and std over the folds, and each fold's best threshold."""

    accuracy: float
    std: float
    fold_accuracies: np.ndarray
    fold_thresholds: np.ndarray


def verification_accuracy(
    embeddings, issame, *, n_folds: int = 10, thresholds=DEFAULT_THRESHOLDS
) -> VerificationAccuracy:
    """The standard (insightface / LFW) k-fold verification accuracy.

    Rows ``2i`` and ``2i + 1`` of ``embeddings`` form pair ``i``. The embeddings are L2-normalized
    and compared by squared Euclidean distance; a pair is declared mated when its distance is below
    the threshold. For each of ``n_folds`` consecutive folds (``KFold`` without shuffling) the
    threshold with the best accuracy on the other folds (the lowest on ties) is applied to it.
    """
    features = np.asarray(embeddings, dtype=np.float64)
    mated = as_mated("issame", issame)
    if features.ndim != 2 or features.shape[0] != 2 * len(mated):
        raise ValueError(f"embeddings must have shape (2 × {len(mated)}, D), got {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError("embeddings must be finite")
    candidates = np.asarray(thresholds, dtype=np.float64)
    if candidates.ndim != 1 or candidates.size == 0:
        raise ValueError("thresholds must be a non-empty 1-D array")
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or not 2 <= n_folds <= len(mated):
        raise ValueError(f"n_folds must be an int in [2, {len(mated)}], got {n_folds!r}")

    features = l2_normalize(features)
    distance = np.sum((features[0::2] - features[1::2]) ** 2, axis=1)
    # correct[t, i]: pair i decided right at threshold t
    correct = (distance[None, :] < candidates[:, None]) == mated[None, :]
    fold_accuracies, best = [], []
    for train, test in KFold(n_splits=n_folds, shuffle=False).split(distance):
        chosen = int(np.argmax(correct[:, train].mean(axis=1)))
        best.append(candidates[chosen])
        fold_accuracies.append(correct[chosen, test].mean())
    accuracies = np.array(fold_accuracies)
    return VerificationAccuracy(float(accuracies.mean()), float(accuracies.std()), accuracies, np.array(best))
