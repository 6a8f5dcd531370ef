"""Detect and align the faces of photos into 112x112 crops.

Detect each photo's faces and five landmarks (MTCNN, the 'photos' extra), align them to the ArcFace
template by a least-squares similarity and write the crops as DIR/<name without extension>.png
(-face<k>.png with --faces all, k = 0 the largest), with DIR/landmarks.csv: one row per photo and
face.
"""

from __future__ import annotations

import argparse

from ..options import FACE_CHOICES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", help="a photo, a folder (searched recursively), or a text file of paths")
    parser.add_argument("--output", required=True, help="folder for the crops and landmarks.csv")
    add_face_options(parser)
    parser.add_argument("--size", type=int, default=112, help="crop size in pixels (default 112, the template's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_face_options(parser) -> None:
    parser.add_argument(
        "--faces",
        choices=FACE_CHOICES,
        help="'largest' (default): the largest face of each photo; 'all': every face, as NAME-face<k>",
    )


def run(args) -> int:
    import os
    from collections import Counter
    from functools import partial

    from PIL import Image
    from tqdm import tqdm

    from crfiqa_kernels.atomic_files import write_atomically

    from ..faces import FaceDetector, align_photos, check_crop_names, face_table_rows, list_photos
    from ..formats import write_face_table

    if args.size < 1:
        raise ValueError(f"--size must be positive, got {args.size}")
    faces = args.faces or "largest"
    photos = list_photos(args.images)
    check_crop_names([name for _, name in photos], faces)
    detector = FaceDetector()
    os.makedirs(args.output, exist_ok=True)
    rows: list[list[str]] = []
    statuses: Counter = Counter()
    crops = 0
    aligned = align_photos(photos, size=args.size, faces=faces, detector=detector)
    for photo in tqdm(aligned, desc="align", unit="photo", total=len(photos), disable=args.no_progress):
        statuses[photo.status.split(":", 1)[0]] += 1
        rows += face_table_rows(photo)
        for face in photo.faces:
            path = os.path.join(args.output, *face.name.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_atomically(path, partial(Image.Image.save, Image.fromarray(face.crop), format="PNG"))
            crops += 1
    table = os.path.join(args.output, "landmarks.csv")
    write_face_table(table, rows)
    print(f"aligned {crops} face(s) of {len(photos)} photo(s) into {args.output}{summary(statuses)}; {table}")
    return 0


def summary(statuses) -> str:
    """``" (2 without a face, 1 unreadable)"``, or nothing when every photo had a face."""
    parts = [
        f"{statuses[kind]} {label}" for kind, label in (("no face", "without a face"), ("unreadable", "unreadable"))
    ]
    parts = [part for part in parts if not part.startswith("0 ")]
    return f" ({', '.join(parts)})" if parts else ""
