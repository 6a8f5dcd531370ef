"""End-to-end samples per second of ``crfiqa curate`` on the demo data, as benchmark records.

    python -m bench.known_truth --out curate-truth     # data (identity folders) + model
    python -m bench.curate_speed --run curate-truth             # → bench/results/cpu-stats-curate.{json,md}

Each repeat is a whole ``curate`` call as the command runs it (read and decode the images, backbone,
``class_stats`` against every class center, the centers' neighbours, flags, CSV / JSON / pictures,
the rename into place), into a scratch folder. Records: ``impl`` ``crfiqa_curate``, ``mode``
``curate``, ``median_ms`` per call, ``samples_per_s`` (samples / median time), and the parts of the
median call (``samples_s``: the streaming pass; ``centers_s``: the centers' neighbours).
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as python -m bench: sleeping waiters on a shared CPU

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from crfiqa.curate import CurateOptions, curate, load_curate_model, open_labelled_data

from .records import cpu_timing_record, write_json
from .shapes import Shape

RESULTS = Path(__file__).resolve().parent / "results"


def measure(model_path: str, data_path: str, *, repeats: int, warmup: int, batch_size: int) -> dict:
    model = load_curate_model(model_path, "cpu")
    dataset = open_labelled_data(data_path, model.input_size)
    options = CurateOptions(batch_size=batch_size)
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(warmup + repeats):
            summary = curate(
                model, dataset, os.path.join(scratch, "report"), options, progress=False, echo=lambda *_: None
            )
            if repeat >= warmup:
                runs.append(summary)
    totals = [run["seconds"]["total"] for run in runs]
    median = sorted(runs, key=lambda run: run["seconds"]["total"])[len(runs) // 2]
    samples = median["samples"]
    shape = Shape(
        "demo-digits",
        batch_size,
        model.num_classes,
        model.centers.shape[1],
        f"known-truth demo digits, {samples} samples",
    )
    measured = {
        "samples": samples,
        "samples_per_s": samples / statistics.median(totals),
        "samples_s": median["seconds"]["samples"],
        "centers_s": median["seconds"]["centers"],
        "centers_method": median["centers"]["method"],
        "model": model_path,
        "data": data_path,
    }
    return cpu_timing_record("crfiqa_curate", shape, "curate", totals, warmup, **measured)


def markdown(record: dict) -> str:
    return "\n".join(
        [
            "# `crfiqa curate` end to end on the demo digits",
            "",
            f"{record['samples']:,} samples of {record['classes']} classes (D = {record['dim']}), "
            f"batch {record['batch']}, "
            f"{record['threads']} thread(s), {record['device_name']}; commit {record['commit']}, {record['date']}; "
            f"load average {record['load_average']:.1f} at the end.",
            "",
            "| median s per run | samples/s | streaming pass s | centers' neighbours s | runs |",
            "|---|---|---|---|---|",
            f"| {record['median_ms'] / 1e3:.2f} | {record['samples_per_s']:,.0f} | {record['samples_s']:.2f} | "
            f"{record['centers_s']:.3f} | {record['repeats']} (+{record['warmup']} warm-up) |",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.curate_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a known-truth folder (python -m bench.known_truth --out DIR)")
    parser.add_argument("--model", help="checkpoint (default RUN/model/checkpoint.pt)")
    parser.add_argument("--data", help="labelled data (default RUN/data)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="cpu-stats-curate")
    args = parser.parse_args(argv)
    model = args.model or (args.run and os.path.join(args.run, "model", "checkpoint.pt"))
    data = args.data or (args.run and os.path.join(args.run, "data"))
    if not model or not data:
        parser.error("give --run, or --model and --data")
    torch.set_num_threads(args.threads)
    record = measure(model, data, repeats=args.repeats, warmup=args.warmup, batch_size=args.batch_size)
    write_json([record], args.out / f"{args.name}.json")
    report = markdown(record)
    (args.out / f"{args.name}.md").write_text(report, encoding="utf-8")
    print(report)
    print(f"Wrote {args.out / (args.name + '.json')}, {args.out / (args.name + '.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
