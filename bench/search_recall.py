"""Recall of the approximate (IVF) class-center search against exact search.

    python -m bench.search_recall                    # 200,000 centers, D = 512, nprobe 8, 32, 128

Two measurements per ``nprobe``, on the same index:

* **10-recall@10** of random unit queries: the share of each query's exact 10 nearest centers that
  the IVF index returns. Random queries lie far from every center, the hardest case for IVF.
* **rank-1 identification** of probes drawn around their own center (cosine ``--probe-cos``), the
  use IVF suits: how often the probe's own class comes first (exact search alongside).

Random unit centers have no cluster structure, so these are lower bounds for trained centers.
Writes ``bench/results/search-recall.{json,md}`` with the environment.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from crfiqa_kernels.search import ClassCenterIndex

from .records import environment

RESULTS = Path(__file__).resolve().parent / "results"


def probes_around(centers: torch.Tensor, labels: torch.Tensor, cosine: float, generator) -> torch.Tensor:
    """Unit vectors at cosine ``cosine`` to their own (unit) center, in a random direction."""
    own = torch.nn.functional.normalize(centers[labels], dim=1)
    noise = torch.randn(own.shape, generator=generator)
    noise -= (noise * own).sum(1, keepdim=True) * own
    noise = torch.nn.functional.normalize(noise, dim=1)
    return cosine * own + (1.0 - cosine**2) ** 0.5 * noise


def measure(classes: int, dim: int, queries: int, nprobes: list[int], probe_cos: float, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=generator)
    random_queries = torch.randn(queries, dim, generator=generator)
    labels = torch.randint(0, classes, (queries,), generator=generator)
    probes = probes_around(centers, labels, probe_cos, generator)

    start = time.perf_counter()
    index = ClassCenterIndex(centers, method="ivf", use_gpu=False, seed=seed)
    build_s = time.perf_counter() - start
    rows = []
    for nprobe in nprobes:
        index.nprobe = nprobe
        start = time.perf_counter()
        recall = index.recall(random_queries, k=10)
        rank1 = index.identification_rate(probes, labels, ranks=(1,))[1]
        rows.append(
            {"nprobe": index.nprobe, "recall_at_10": recall, "rank1": rank1, "seconds": time.perf_counter() - start}
        )
    exact_rank1 = ClassCenterIndex(centers, use_gpu=False).identification_rate(probes, labels, ranks=(1,))[1]
    return {
        "classes": classes,
        "dim": dim,
        "queries": queries,
        "probe_cos": probe_cos,
        "seed": seed,
        "nlist": index.nlist,
        "build_seconds": build_s,
        "rows": rows,
        "exact_rank1": exact_rank1,
        "environment": environment(torch.device("cpu")),
    }


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [
        "# IVF class-center search: recall against exact search",
        "",
        f"C = {result['classes']:,} random unit centers, D = {result['dim']}, {result['queries']:,} queries, "
        f"nlist = {result['nlist']:,} (built in {result['build_seconds']:.1f} s); probes at cosine "
        f"{result['probe_cos']} to their own center.",
        f"Device: {env['device_name']}; faiss-cpu; commit {env['commit']}, {env['date']}.",
        "",
        "| nprobe | 10-recall@10 (random queries) | rank-1 identification (probes) |",
        "|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(f"| {row['nprobe']} | {row['recall_at_10']:.3f} | {row['rank1']:.3f} |")
    lines.append(f"| exact (flat) | 1.000 | {result['exact_rank1']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--probe-cos", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="search-recall")
    args = parser.parse_args(argv)
    result = measure(args.classes, args.dim, args.queries, args.nprobe, args.probe_cos, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    report = markdown(result)
    (args.out / f"{args.name}.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
