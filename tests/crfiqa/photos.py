"""Real faces without a download for the photo tests: scikit-image's bundled ``astronaut`` photo
(512 × 512, one face), placed rotated and scaled in larger canvases with the placement known."""

import numpy as np

# The part of the photo that holds the face and everything its aligned crop shows (the face's box
# is about x 179–268, y 60–173; the 112 × 112 crop spans about 137 of its pixels around it).
FACE_PART = (slice(0, 260), slice(110, 350))
FACE_PART_ORIGIN = np.array([110.0, 0.0])  # (x, y) of the part's corner in the photo


def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def place(part: np.ndarray, angle: float, scale: float, rng: np.random.Generator, margin: float = 1.4):
    """``(canvas, matrix)``: ``part`` turned by ``angle`` degrees and scaled by ``scale`` at a random
    spot of a black canvas ``margin`` times the turned part's extent; ``matrix`` (2, 3) maps the
    part's pixel coordinates to the canvas'."""
    import cv2

    height, width = part.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
    corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], dtype=np.float64)
    mapped = corners @ matrix[:, :2].T + matrix[:, 2]
    extent = mapped.max(axis=0) - mapped.min(axis=0)
    canvas = np.ceil(extent * margin + 40).astype(int)
    matrix[:, 2] += rng.uniform(0, 1, 2) * (canvas - extent) - mapped.min(axis=0)
    placed = cv2.warpAffine(part, matrix, (int(canvas[0]), int(canvas[1])), flags=cv2.INTER_LINEAR)
    return placed, matrix
