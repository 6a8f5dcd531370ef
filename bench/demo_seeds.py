"""The demo's held-out figures over several seeds, on this machine: how much they vary.

    python -m bench.demo_seeds --seeds 0 1 2 3 4 --threads 2   # → bench/results/cpu-demo-seeds.{json,md}

Each seed is one full ``crfiqa demo`` run (its data, degradations and training all follow the
seed). The figures are not reproducible bit for bit across machines: another CPU's BLAS kernels
and vector width round differently through the training steps, so a record states the machine it
ran on and the range over its seeds; read a single run as a draw from that range.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from crfiqa.demo import DemoSettings, run_demo
from crfiqa.demo.digits import NUM_CLASSES
from crfiqa_kernels.atomic_files import write_text_atomically

from .records import environment, make_record, write_json
from .shapes import Shape

RESULTS = Path(__file__).resolve().parent / "results"
QUALITY, KNOWN = "CR-FIQA quality", "known degradation strength"


def measure(seed: int, max_steps: int | None = None) -> dict:
    metrics = run_demo(None, DemoSettings(seed=seed, max_steps=max_steps), progress=False, echo=lambda line: None)
    edc = metrics["edc"]
    shape = Shape("demo-digits", DemoSettings.batch_size, NUM_CLASSES, DemoSettings.embedding_size, "crfiqa demo")
    return make_record(
        environment(torch.device("cpu")),
        impl="crfiqa_demo",
        shape=shape,
        dtype="fp32",
        mode="demo",
        status="ok",
        seed=seed,
        steps=metrics["training"]["steps"],
        spearman=metrics["spearman"],
        fnmr_at_discard_limit=edc["fnmr_at_discard_limit"],
        pauc=edc["pauc"],
        genuine_pairs=edc["genuine_pairs"],
        training_seconds=metrics["training"]["seconds"],
        runtime_seconds=metrics["runtime_seconds"],
    )


def _range(values: list[float], digits: int) -> str:
    low, high = min(values), max(values)
    return f"{low:.{digits}f}" if low == high else f"{low:.{digits}f} to {high:.{digits}f}"


def markdown(records: list[dict]) -> str:
    first = records[0]
    rows = [
        "| seed | Spearman ρ | FNMR at 20 % discarded: quality | known strength | pAUC: quality | known strength "
        "| training (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for record in records:
        fnmr, pauc = record["fnmr_at_discard_limit"], record["pauc"]
        rows.append(
            f"| {record['seed']} | {record['spearman']:.3f} | {fnmr[QUALITY]:.3f} | {fnmr[KNOWN]:.3f} "
            f"| {pauc[QUALITY]:.4f} | {pauc[KNOWN]:.4f} | {record['training_seconds']:.0f} |"
        )
    random_fnmr = first["fnmr_at_discard_limit"]["random rejection (expected)"]
    random_pauc = first["pauc"]["random rejection (expected)"]
    summary = (
        f"Over seeds {', '.join(str(r['seed']) for r in records)}: ρ {_range([r['spearman'] for r in records], 3)}, "
        f"FNMR at 20 % discarded {_range([r['fnmr_at_discard_limit'][QUALITY] for r in records], 3)} "
        f"(known strength {_range([r['fnmr_at_discard_limit'][KNOWN] for r in records], 3)}, random rejection "
        f"{random_fnmr:.3f}), pAUC {_range([r['pauc'][QUALITY] for r in records], 4)} (random {random_pauc:.4f})."
    )
    return "\n".join(
        [
            "# `crfiqa demo` over seeds, CPU",
            "",
            f"{first['device_name']}, {first['threads']} torch thread(s); torch {first['torch']}; commit "
            f"{first['commit']}{' (uncommitted changes)' if first['dirty'] else ''}, {first['date']}. "
            f"{first['steps']} training steps and {first['genuine_pairs']:,} genuine pairs of held-out images "
            "per seed; the EDC threshold is fixed where 10 % of them fail before discarding.",
            "",
            *rows,
            "",
            summary,
            "Another CPU (its BLAS kernels, its vector width) rounds differently through training: its figures differ.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.demo_seeds", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="demo seeds (default 0-4)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--max-steps", type=int, help="stop each training early (a check of the script, not a figure)")
    parser.add_argument("--output", default=str(RESULTS / "cpu-demo-seeds"), help="record path without extension")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    records = []
    for seed in args.seeds:
        records.append(measure(seed, args.max_steps))
        print(f"seed {seed}: rho {records[-1]['spearman']:.3f}", flush=True)
    write_json(records, Path(f"{args.output}.json"))
    write_text_atomically(f"{args.output}.md", markdown(records))
    print(f"wrote {args.output}.json and {args.output}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
