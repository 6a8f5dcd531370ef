"""The same benchmark case at two revisions of the code, interleaved in one run.

    python -m bench.revisions BASE --impl chunked --shape L --dtype fp32 --rounds 4

A change that must not slow a path down is timed against the code before it in the same run:
BASE is checked out in a temporary git worktree, and each round runs ``python -m bench`` for
the one case in BASE's tree, then in this tree, so that whatever else the machine does falls on
both alike. Writes ``bench/results/NAME.json`` (every record, with its ``revision``) and
``NAME.md``: the medians of each round and the ratio of the medians of the rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from .records import REPOSITORY, read_json, write_json


def _run_case(tree: Path, args: argparse.Namespace, out: Path, name: str) -> list[dict]:
    """``python -m bench`` for the one case, with ``tree``'s code; its records."""
    command = [sys.executable, "-m", "bench", "--device", "cpu", "--shapes", args.shape, "--dtypes", args.dtype]
    command += ["--modes", args.mode, "--impls", args.impl, "--threads", str(args.threads)]
    command += ["--warmup", "1", "--repeats", str(args.repeats), "--out", str(out), "--name", name]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(tree), str(tree / "python")))}
    subprocess.run(command, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    return read_json(out / f"{name}.json")


def _table(records: list[dict], base: str, head: str, args: argparse.Namespace) -> str:
    medians = {label: [r["median_ms"] for r in records if r["revision"] == label] for label in (base, head)}
    pairs = list(zip(medians[base], medians[head], strict=True))
    ratios = [new / old for old, new in pairs]
    rounds = "\n".join(
        f"| {index + 1} | {old:,.1f} | {new:,.1f} | {ratio:.3f} |"
        for index, ((old, new), ratio) in enumerate(zip(pairs, ratios, strict=True))
    )
    old, new = statistics.median(medians[base]), statistics.median(medians[head])
    first = records[-1]
    return (
        f"# `{args.impl}` at {args.shape} · {args.dtype} · {args.mode}: {head} against {base}\n\n"
        f"Device: cpu — {first['cpu']}; threads: {args.threads}; torch {first['torch']}; "
        f"{first['date']}. Each round times {base} then {head} ({args.repeats} repeats after 1 warm-up).\n\n"
        f"| round | {base} median ms | {head} median ms | {head} / {base} |\n|---|---|---|---|\n{rounds}\n\n"
        f"Median of the rounds: {old:,.1f} ms against {new:,.1f} ms: {head} takes **{new / old:.3f}×** "
        f"the time of {base} (per-round ratios {min(ratios):.3f}–{max(ratios):.3f}).\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.revisions", description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the revision to compare with (a commit, branch or tag)")
    parser.add_argument("--impl", default="chunked", help="the implementation (default chunked)")
    parser.add_argument("--shape", default="L", help="the shape (default L)")
    parser.add_argument("--dtype", default="fp32", help="fp32 or bf16 (default fp32)")
    parser.add_argument("--mode", default="fwd_bwd", help="fwd or fwd_bwd (default fwd_bwd)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per round (default 5)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds, each timing both revisions (default 4)")
    parser.add_argument("--out", default=str(REPOSITORY / "bench" / "results"), help="output folder")
    parser.add_argument("--name", default="revisions", help="output file stem (default revisions)")
    args = parser.parse_args(argv)
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPOSITORY, capture_output=True, text=True, check=True
    ).stdout.strip()
    records: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        base_tree, out = Path(scratch) / "base", Path(scratch) / "records"
        subprocess.run(["git", "worktree", "add", "--detach", str(base_tree), args.base], cwd=REPOSITORY, check=True)
        try:
            for index in range(args.rounds):
                for label, tree in ((args.base, base_tree), (head, REPOSITORY)):
                    for record in _run_case(tree, args, out, f"round{index}"):
                        records.append({**record, "revision": label})
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=REPOSITORY, check=False)
    out_dir = Path(args.out)
    write_json(records, out_dir / f"{args.name}.json")
    table = _table(records, args.base, head, args)
    (out_dir / f"{args.name}.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
