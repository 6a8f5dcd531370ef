"""Write a .rec/.idx training set from identity folders or a list.

Write the insightface RecordIO pair OUT.rec + OUT.idx (with identity records) from one folder per
identity, or from a text file of 'path label' lines (labels 0 … K−1). JPEG and PNG files are stored
as they are; other images as JPEG.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", help="a folder of identity folders, or a text file of 'path label' lines")
    parser.add_argument("output", help="the .rec file to write (the .idx goes beside it)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT.rec/.idx")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from ..data.pack import labelled_images, pack_images

    samples = labelled_images(args.images)
    count, identities = pack_images(samples, args.output, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"packed {count} image(s) of {identities} identities into {args.output}")
    return 0
