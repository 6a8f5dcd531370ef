"""The ArcFace alignment template: where the five landmarks of a face go in a 112 × 112 crop.

The coordinates are insightface's (``arcface_dst`` of ``insightface.utils.face_align``), the
template every ArcFace-style recognition network and the CR-FIQA models are trained on, in the
order the detector reports landmarks: left eye, right eye, nose tip, left and right mouth corner
(left and right as the viewer sees them). Pixel coordinates with (0, 0) the centre of the top-left
pixel, as ``cv2.warpAffine`` uses them.
"""

from __future__ import annotations

import numpy as np

TEMPLATE_SIZE = 112
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
ARCFACE_TEMPLATE = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)


def template(size: int = TEMPLATE_SIZE) -> np.ndarray:
    """The ``(5, 2)`` template for a ``size × size`` crop: the 112 one scaled by ``size / 112``."""
    if size < 1:
        raise ValueError(f"crop size must be positive, got {size}")
    return np.asarray(ARCFACE_TEMPLATE, dtype=np.float64) * (size / TEMPLATE_SIZE)
