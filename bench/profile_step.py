"""Where one training step of the op spends its time: ``torch.profiler`` over forward + backward.

    python -m bench.profile_step                          # chunked, shape L, fp32, 2 threads, CPU
    python -m bench.profile_step --backend triton --device cuda --shape XL

Prints the operators by self time (after two warm-up steps) and the share spent in matrix products,
the part no elementwise tuning can remove.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from crfiqa_kernels import Margin, margin_ccs_loss

from .shapes import SHAPES, get_shape

MATRIX_PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="chunked")
    parser.add_argument("--shape", default="L", choices=sorted(SHAPES))
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=20, help="operators listed")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    shape = get_shape(args.shape)
    generator = torch.Generator().manual_seed(0)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    embeddings = torch.randn(shape.batch, shape.dim, generator=generator).to(args.device, dtype).requires_grad_()
    weight = torch.randn(shape.classes, shape.dim, generator=generator).to(args.device).requires_grad_()
    labels = torch.randint(0, shape.classes, (shape.batch,), generator=generator).to(args.device)

    def step():
        out = margin_ccs_loss(embeddings, weight, labels, Margin.arcface(), backend=args.backend)
        out.loss.backward()
        if args.device == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
    events = prof.key_averages()
    sort_by = "self_cuda_time_total" if args.device == "cuda" else "self_cpu_time_total"
    print(events.table(sort_by=sort_by, row_limit=args.rows))
    if args.device == "cpu":
        total = sum(event.self_cpu_time_total for event in events)
        products = sum(event.self_cpu_time_total for event in events if event.key in MATRIX_PRODUCTS)
        print(
            f"{shape.describe()} {args.dtype} {args.backend}: {total / 1e3:,.0f} ms of operator time, "
            f"{products / 1e3:,.0f} ms ({products / total:.0%}) in matrix products"
        )


if __name__ == "__main__":
    main()
