"""The Triton backward's candidate configurations timed on a GPU: ``python -m bench.tune``.

For each shape (L and Shard by default) in bf16 — bf16 embeddings, fp32 weights, the training
step's operands — every configuration of ``triton_config.BACKWARD_CANDIDATES["half"]`` is sized for
the problem as the default is (programs, row passes: ``triton_config.backward_config``) and its
backward launch timed round-robin with the others (:func:`bench.timing.round_robin`). One warm-up
call each first compiles it; a candidate that fails is recorded with its error. The records
(:mod:`bench.records`, mode ``backward``, impl ``triton-bwd`` and the blocks) and a table of each
candidate's time over the default's go to ``--out``: the evidence for changing the table's default.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from crfiqa_kernels.atomic_files import write_text_atomically
from crfiqa_kernels.backends import triton as triton_backend
from crfiqa_kernels.backends.contract import LogitParams
from crfiqa_kernels.backends.triton import config as triton_config
from crfiqa_kernels.combine import combine_partials

from .records import environment, make_record, write_json
from .shapes import Shape, get_shape
from .timing import round_robin

RESULTS = Path(__file__).resolve().parent / "results"
LOGITS = LogitParams(s=64.0)  # ArcFace's scale; the target logit is not the kernels'


def describe(config: triton_config.BackwardConfig) -> str:
    return (
        f"triton-bwd b{config.block_b} c{config.block_c} d{config.block_d} dw{config.block_dw} "
        f"w{config.num_warps} s{config.num_stages}"
    )


def backward_operands(shape: Shape, device: torch.device, seed: int) -> tuple:
    """The backend's backward arguments for one bf16 step: ê, W, 1/‖W‖, labels, logits, lse, g."""
    generator = torch.Generator(device=device).manual_seed(seed)
    weight = torch.randn(shape.classes, shape.dim, device=device, generator=generator).mul_(0.01)
    e_hat = torch.nn.functional.normalize(torch.randn(shape.batch, shape.dim, device=device, generator=generator))
    e_hat = e_hat.bfloat16()
    labels = torch.randint(0, shape.classes, (shape.batch,), device=device, generator=generator)
    w_inv_norm = weight.norm(dim=1).clamp_min(1e-12).reciprocal()
    lse = combine_partials(triton_backend.forward_partials(e_hat, weight, w_inv_norm, labels, LOGITS)).lse
    row_grad = torch.full((shape.batch,), 1.0 / shape.batch, device=device)
    return e_hat, weight, w_inv_norm, labels, LOGITS, lse, row_grad


def tune(shapes: list[Shape], device: torch.device, repeats: int, candidates=None) -> list[dict]:
    """One record per (shape, candidate): the median backward time, or the error that stopped it."""
    env = environment(device)
    records = []
    for shape in shapes:
        operands = backward_operands(shape, device, seed=shape.batch)
        configs = {}
        for candidate in candidates or triton_config.BACKWARD_CANDIDATES["half"]:
            config = triton_config.backward_config(
                shape.batch, shape.classes, shape.dim, torch.bfloat16, device, False, template=candidate
            )
            configs[describe(candidate)] = config
        steps = {
            name: (lambda problem, config=config: triton_backend.backward(*problem, config=config))
            for name, config in configs.items()
        }
        failures = {}
        for name, step in list(steps.items()):
            try:
                step(operands)  # compiles
            except Exception as error:  # noqa: BLE001 — recorded, the others go on
                failures[name] = error
                del steps[name]
        timings, late_failures = round_robin(steps, [operands], device, repeats)
        failures.update(late_failures)
        for name, config in configs.items():
            measured = {"config": dataclasses.asdict(config)}
            if name in timings:
                timing = timings[name]
                measured.update(
                    median_ms=timing.median_ms, q25_ms=timing.q25_ms, q75_ms=timing.q75_ms, repeats=timing.repeats
                )
                status, message = "ok", ""
            else:
                error = failures[name]
                status, message = "error", f"{type(error).__name__}: {error}".splitlines()[0]
            records.append(
                make_record(
                    env,
                    impl=name,
                    shape=shape,
                    dtype="bf16",
                    mode="backward",
                    status=status,
                    message=message,
                    **measured,
                )
            )
    return records


def table(records: list[dict]) -> str:
    """Markdown: per shape, each candidate's median and its ratio to the default (the first)."""
    lines = [
        "| shape | configuration | backward median ms | / default |",
        "| --- | --- | ---: | ---: |",
    ]
    default: dict[str, float | None] = {}
    for record in records:
        median = record["median_ms"]
        base = default.setdefault(record["shape"], median)
        if median is None:
            lines.append(f"| {record['shape']} | {record['impl']} | {record['status']}: {record['message']} | |")
            continue
        ratio = f"{median / base:.2f}×" if base else "—"
        lines.append(f"| {record['shape']} | {record['impl']} | {median:.3f} | {ratio} |")
    head = records[0] if records else {}
    return (
        f"Backward candidates on {head.get('device_name')} (torch {head.get('torch')}, triton {head.get('triton')}, "
        f"commit {head.get('commit')}, {head.get('date')}); measured, CUDA events, median of the repeats.\n\n"
        + "\n".join(lines)
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tune", description="Time the Triton backward's candidate configurations (bf16)."
    )
    parser.add_argument("--shapes", default="L,Shard", help="comma-separated bench shapes (default L,Shard)")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats per candidate (default 10)")
    parser.add_argument("--device", default="cuda", help="a CUDA device (the CPU only under TRITON_INTERPRET=1)")
    parser.add_argument("--out", type=Path, default=RESULTS / "tune", help="folder for tune.json and tune.md")
    args = parser.parse_args(argv)
    try:
        shapes = [get_shape(name) for name in args.shapes.split(",") if name]
    except ValueError as error:
        parser.error(f"--shapes: {error}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    device = torch.device(args.device)
    if not triton_backend.available(device):
        parser.error(
            f"--device {args.device}: the triton backend cannot run there (a CUDA device, or TRITON_INTERPRET=1)"
        )
    records = tune(shapes, device, args.repeats)
    write_json(records, args.out / "tune.json")
    text = table(records)
    write_text_atomically(args.out / "tune.md", text)
    print(text)
    print(f"Wrote {args.out / 'tune.json'} and {args.out / 'tune.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
