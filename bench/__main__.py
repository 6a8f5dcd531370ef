"""Command line of the benchmark harness: ``python -m bench --help``.

Examples::

    python -m bench --preset cpu-l            # the CPU path at L, 2 threads
    python -m bench --preset gpu              # every peer, shape, dtype and mode on a GPU
    python -m bench --device cpu --shapes S --impls chunked,authors_eager --modes fwd_bwd
    python -m bench --preset gpu-scale        # largest C whose training step fits (GPU)
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    # Run as a program (not when imported): set before torch loads; the environment overrides.
    # Inductor compiles in a pool of worker processes that keeps spinning for a while after a
    # compile, slowing the next measured steps on a small CPU: compile in-process instead.
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    # OpenMP threads that spin while they wait at a barrier burn the time slices their siblings
    # need when other work shares the cores: a step made of many small parallel operations (a
    # tiled one) then slows down several-fold, and the measurement says more about the machine's
    # load than about the code. Sleeping waiters cost microseconds per operation on a quiet machine.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path

import torch

from .impls import IMPLEMENTATIONS, MODES, get_implementation
from .presets import DEFAULTS, PRESETS, REPEATS
from .problems import DTYPES, get_dtype
from .records import environment, write_json
from .report import markdown, write_report
from .runner import RunConfig, run_all
from .scale import run_scale
from .shapes import SHAPES, get_shape

RESULTS = Path(__file__).resolve().parent / "results"


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time and measure the memory of the margin-softmax / CCS / NNCCS op against its peers.",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a named set of the options below")
    parser.add_argument("--device", choices=("cpu", "cuda"))
    parser.add_argument("--shapes", help=f"comma-separated, of: {', '.join(SHAPES)}")
    parser.add_argument("--dtypes", help=f"comma-separated, of: {', '.join(DTYPES)}")
    parser.add_argument("--modes", help=f"comma-separated, of: {', '.join(MODES)}")
    parser.add_argument("--impls", help="comma-separated implementation names, or 'all' (see --list)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU intra-op threads)")
    parser.add_argument("--warmup", type=int, help="untimed repeats first (CPU default 1, CUDA 5)")
    parser.add_argument("--repeats", type=int, help="timed repeats (CPU default 5, CUDA 30)")
    parser.add_argument("--rotate", type=int, default=3, help="sets of embeddings/labels cycled through")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend of authors_compiled")
    parser.add_argument(
        "--scale",
        action="store_true",
        default=None,
        help="find the largest C whose training step fits on the GPU, by bisection",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="output folder (default bench/results)")
    parser.add_argument("--name", help="output file stem (default: the preset's name, else 'run')")
    parser.add_argument("--list", action="store_true", help="list implementations, shapes and presets, then exit")
    return parser


def resolve_options(args: argparse.Namespace) -> argparse.Namespace:
    """Fill what was not given from the preset, then from the defaults."""
    preset = PRESETS.get(args.preset, {})
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, preset.get(key, default))
    warmup, repeats = REPEATS[args.device]
    args.warmup = warmup if args.warmup is None else args.warmup
    args.repeats = repeats if args.repeats is None else args.repeats
    args.name = args.name or args.preset or "run"
    return args


def _selection(parser, args):
    try:
        names = list(IMPLEMENTATIONS) if args.impls == "all" else _list(args.impls)
        impls = [get_implementation(name) for name in names]
        dtypes = [get_dtype(name) for name in _list(args.dtypes)]
        shapes = [get_shape(name) for name in _list(args.shapes)]
    except ValueError as error:
        parser.error(str(error))
    modes = _list(args.modes)
    for mode in modes:
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    if args.repeats < 1 or args.warmup < 0 or args.rotate < 1:
        parser.error("--repeats and --rotate must be at least 1, --warmup at least 0")
    return impls, shapes, dtypes, modes


def _print_list() -> None:
    print("Implementations:")
    for impl in IMPLEMENTATIONS.values():
        print(f"  {impl.name:30s} {impl.kind:7s} modes {','.join(impl.modes):12s} {impl.summary}")
    print("Shapes:")
    for shape in SHAPES.values():
        print(f"  {shape.describe():45s} {shape.about}")
    print("Presets:")
    for name, options in PRESETS.items():
        flags = (f"--{key}" if value is True else f"--{key} {value}" for key, value in options.items())
        print(f"  {name:10s} " + " ".join(flags))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        _print_list()
        return 0
    args = resolve_options(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU, and torch.cuda.is_available() is False on this machine")
    if args.scale and args.device != "cuda":
        parser.error("--scale measures GPU memory: it needs --device cuda")
    impls, shapes, dtypes, modes = _selection(parser, args)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    config = RunConfig(
        device,
        warmup=args.warmup,
        repeats=args.repeats,
        rotate=args.rotate,
        seed=args.seed,
        compile_backend=args.compile_backend,
    )
    if args.scale:
        records = run_scale(impls, dtypes, config, environment(device))
    else:
        records = run_all(impls, shapes, dtypes, modes, config)
    json_path = args.out / f"{args.name}.json"
    write_json(records, json_path)
    written = write_report(records, args.out, args.name)
    print(markdown(records))
    print("Wrote " + ", ".join(str(path) for path in (json_path, *written)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
