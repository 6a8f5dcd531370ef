"""A *modeled* roofline of the fused kernels and the GEMM floors: ``python -m bench.model``.

Nothing here is measured. Each kernel's work is counted in FLOPs and HBM bytes from the formulas in
:data:`KERNELS` (the design of the rewritten kernels, DESIGN §3.1: forward 1 GEMM-equivalent,
backward 3 — one recompute, ∂ℓ/∂ê, ∂ℓ/∂W), turned into time on an H100-class card by the roofline
``max(FLOPs / peak, HBM bytes / bandwidth)`` per kernel launch, and set beside the floors that the
benchmark measures (``floor``: the three cuBLAS GEMMs ``E·Wᵀ``, ``G·W``, ``Gᵀ·E`` on a materialized
``B × C`` product; ``floor4``: the same plus one recompute of ``E·Wᵀ``), modeled the same way.

The counts live in one small table (:data:`KERNELS`): each entry is a list of launches, each launch
its GEMM-equivalents and its byte terms as formulas of the shape. Adjust a formula there and the
table follows. Variables: ``B``, ``C``, ``D`` (the shape), ``e`` (bytes of the compute dtype: 2 for
bf16), ``w`` (bytes of the master weights: 4), ``fwd_splits`` (the forward's class splits: enough
programs to fill the card, DESIGN §3 / ``triton_config``), ``passes`` (the backward's row passes),
``fwd_block_b``, ``block_b``, ``block_c`` and ``block_dw`` (the forward's batch tile, the backward's
batch tile, class tile and dW column chunk).

The backward's parameters come from the kernels' own tables (``triton_config``, the bf16 row) and
its sizing rules: one program per SM, the ∂ℓ/∂c scratch (programs × rows × ``block_c``) kept within
half the L2 by processing a larger batch in ``passes`` of fewer rows (``triton_config.scratch_rows``),
each pass reading W again and adding to dW.

Assumptions, also written into the output: the scratch, sized to half the L2 and rewritten by the
program that reads it, stays in L2 (``--scratch-in-hbm`` counts it as HBM traffic instead); the
``dê`` fp32 atomics (B × D per class tile), the re-reads of E per class tile and of W tiles per batch
tile go to L2 and are listed, not timed (``--l2-bandwidth`` times them, for ours only: the floors'
GEMM tiles re-read from L2 too, uncounted, so that check is pessimistic for ours); launch overheads,
tails and the combine step (O(B)) are not modeled.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from crfiqa_kernels.backends.triton import config as triton_config

from .shapes import get_shape

RESULTS = Path(__file__).resolve().parent / "results"
LABEL = "modeled, not measured"

# ---------------------------------------------------------------------------------------------
# The data description: per implementation, its launches; per launch, GEMM-equivalents of
# B·C·D multiply-adds (2·B·C·D FLOPs each) and byte terms (formula strings of the variables above).
# "hbm" terms are timed against the bandwidth; "l2" terms are listed only.
# ---------------------------------------------------------------------------------------------
KERNELS: dict[str, list[dict]] = {
    "ours (fused, modeled)": [
        {
            "launch": "forward",
            "gemms": 1,
            "hbm": {
                "W read once (fp32 master)": "C*D*w",
                "E read per class split": "fwd_splits*B*D*e",
            },
            "l2": {"W tiles re-read by the programs of the other batch tiles": "(ceil(B/fwd_block_b) - 1)*C*D*w"},
        },
        {
            "launch": "backward",
            "gemms": 3,
            "hbm": {
                "W read once per row pass (fp32 master)": "passes*C*D*w",
                "dW written by the first pass, read and written by each later one": "(2*passes - 1)*C*D*w",
                "dℓ/dc scratch written once, read once per dW column chunk (compute dtype), if not in L2": (
                    "(1 + ceil(D/block_dw))*B*C*e*(1-scratch_in_l2)"
                ),
                "E read, dE written (fp32)": "B*D*e + B*D*4",
            },
            "l2": {
                "dℓ/dc scratch (L2-resident)": "(1 + ceil(D/block_dw))*B*C*e*scratch_in_l2",
                "dE fp32 atomics, B×D per class tile": "ceil(C/block_c)*B*D*4",
                "E re-read per class tile (recompute, dW products)": "2*ceil(C/block_c)*B*D*e",
                "W tile re-read per batch tile (recompute, dê product)": "(2*ceil(B/block_b) - passes)*C*D*w",
            },
        },
    ],
    # The bench's floor impl: cuBLAS GEMMs in the compute dtype (W cast once, outside the step), the
    # B × C product materialized in the compute dtype.
    "floor (3 GEMMs, modeled)": [
        {"launch": "E·Wᵀ", "gemms": 1, "hbm": {"E, W read; B×C written": "B*D*e + C*D*e + B*C*e"}, "l2": {}},
        {"launch": "G·W", "gemms": 1, "hbm": {"G, W read; B×D written": "B*C*e + C*D*e + B*D*e"}, "l2": {}},
        {"launch": "Gᵀ·E", "gemms": 1, "hbm": {"G, E read; C×D written": "B*C*e + B*D*e + C*D*e"}, "l2": {}},
    ],
    "floor4 (4 GEMMs, modeled)": [
        {"launch": "E·Wᵀ", "gemms": 1, "hbm": {"E, W read; B×C written": "B*D*e + C*D*e + B*C*e"}, "l2": {}},
        {"launch": "E·Wᵀ again", "gemms": 1, "hbm": {"E, W read; B×C written": "B*D*e + C*D*e + B*C*e"}, "l2": {}},
        {"launch": "G·W", "gemms": 1, "hbm": {"G, W read; B×D written": "B*C*e + C*D*e + B*D*e"}, "l2": {}},
        {"launch": "Gᵀ·E", "gemms": 1, "hbm": {"G, E read; C×D written": "B*C*e + B*D*e + C*D*e"}, "l2": {}},
    ],
}
OURS = "ours (fused, modeled)"
FLOOR3 = "floor (3 GEMMs, modeled)"
FLOOR4 = "floor4 (4 GEMMs, modeled)"
MODEL_SHAPES = ("S", "L", "XL", "Shard")


@dataclass(frozen=True)
class Machine:
    """The card the model turns counts into time on (defaults: H100-class, dense bf16)."""

    name: str = "H100 (modeled: 790 TFLOP/s dense bf16, 3.0 TB/s HBM)"
    flops_per_s: float = 790e12
    hbm_bytes_per_s: float = 3.0e12
    # None: L2 traffic is listed, not timed. A rate (bytes/s) makes it a third roofline term, for a
    # sensitivity check: nobody has measured the card's L2 fp32-atomic rate here.
    l2_bytes_per_s: float | None = None


@dataclass(frozen=True)
class Params:
    """Kernel parameters the counts depend on: the bf16 rows of the kernels' block tables and their
    sizing rules on a 132-SM card with 50 MiB of L2 (an H100 SXM)."""

    compute_bytes: int = 2  # e: bf16
    weight_bytes: int = 4  # w: fp32 master weights
    multiprocessors: int = 132
    l2_bytes: int = 50 * 2**20
    forward: triton_config.ForwardConfig = triton_config.FORWARD_BLOCKS["half"]
    backward: triton_config.BackwardConfig = triton_config.BACKWARD_BLOCKS["half"]
    scratch_in_l2: bool = True

    def variables(self, batch: int, classes: int, dim: int) -> dict:
        forward_programs = triton_config.PROGRAMS_PER_SM * self.multiprocessors
        fwd_splits = min(
            math.ceil(classes / self.forward.block_c),
            math.ceil(forward_programs / math.ceil(batch / self.forward.block_b)),
        )
        backward_programs = min(
            math.ceil(classes / self.backward.block_c), triton_config.BACKWARD_PROGRAMS_PER_SM * self.multiprocessors
        )
        rows = triton_config.scratch_rows(self.l2_bytes, backward_programs, self.backward, self.compute_bytes)
        return {
            "B": batch,
            "C": classes,
            "D": dim,
            "e": self.compute_bytes,
            "w": self.weight_bytes,
            "fwd_splits": fwd_splits,
            "passes": math.ceil(batch / rows),
            "fwd_block_b": self.forward.block_b,
            "block_b": self.backward.block_b,
            "block_c": self.backward.block_c,
            "block_dw": min(self.backward.block_dw, dim),
            "scratch_in_l2": int(self.scratch_in_l2),
            "ceil": math.ceil,
        }


def evaluate(formula: str, variables: dict) -> float:
    """One byte formula of :data:`KERNELS` (arithmetic on the variables and ``ceil`` only)."""
    return float(eval(formula, {"__builtins__": {}}, variables))  # our own table's formulas


@dataclass
class Launch:
    name: str
    flops: float
    hbm_bytes: float
    l2_bytes: float
    seconds: float
    bound: str


@dataclass
class Modeled:
    impl: str
    shape: str
    launches: list[Launch] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(launch.seconds for launch in self.launches)

    @property
    def flops(self) -> float:
        return sum(launch.flops for launch in self.launches)

    @property
    def hbm_bytes(self) -> float:
        return sum(launch.hbm_bytes for launch in self.launches)

    @property
    def l2_bytes(self) -> float:
        return sum(launch.l2_bytes for launch in self.launches)


def model(impl: str, shape_name: str, machine: Machine = Machine(), params: Params = Params()) -> Modeled:
    """The modeled fwd+bwd of one implementation of :data:`KERNELS` at one benchmark shape."""
    shape = get_shape(shape_name)
    variables = params.variables(shape.batch, shape.classes, shape.dim)
    result = Modeled(impl, shape_name)
    for launch in KERNELS[impl]:
        flops = launch["gemms"] * 2.0 * shape.batch * shape.classes * shape.dim
        hbm = sum(evaluate(formula, variables) for formula in launch["hbm"].values())
        l2 = sum(evaluate(formula, variables) for formula in launch["l2"].values())
        times = {"compute": flops / machine.flops_per_s, "memory": hbm / machine.hbm_bytes_per_s}
        if machine.l2_bytes_per_s:
            times["L2"] = l2 / machine.l2_bytes_per_s
        bound = max(times, key=times.get)
        result.launches.append(Launch(launch["launch"], flops, hbm, l2, times[bound], bound))
    return result


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.3f}"


def table(machine: Machine = Machine(), params: Params = Params(), shapes=MODEL_SHAPES) -> tuple[str, dict]:
    """The markdown report and, per shape, ours / floor (modeled) for the summary line."""
    lines = [
        f"# Modeled roofline — {LABEL}",
        "",
        (
            f"**Every figure on this page is modeled** (`python -m bench.model`), from counted FLOPs and HBM bytes "
            f"on {machine.name}; none was measured. Measured figures live in the benchmark's own tables."
        ),
        "",
        (
            f"Dtype: bf16 compute (e = {params.compute_bytes} bytes), fp32 master weights (w = {params.weight_bytes}). "
            f"Per launch: time = max(FLOPs / {machine.flops_per_s / 1e12:,.0f} TFLOP/s, "
            f"HBM bytes / {machine.hbm_bytes_per_s / 1e12:,.1f} TB/s); a step is the sum of its launches."
        ),
        f"Assumptions: dℓ/dc scratch "
        f"{'L2-resident (not timed)' if params.scratch_in_l2 else 'counted as HBM traffic'}; "
        f"{params.multiprocessors} SMs, {params.l2_bytes / 2**20:,.0f} MiB of L2; forward class splits fill "
        f"{triton_config.PROGRAMS_PER_SM} programs per SM of {params.forward.block_b} rows; backward: one program "
        f"per SM, class tile {params.backward.block_c}, dW column chunk {params.backward.block_dw}, row passes that "
        f"keep the scratch within {triton_config.SCRATCH_L2_SHARE:.0%} of L2; dE atomics and the re-reads of E "
        "and W tiles go to L2 "
        + (
            f"(timed at an assumed {machine.l2_bytes_per_s / 1e12:,.1f} TB/s, for ours only: pessimistic); "
            if machine.l2_bytes_per_s
            else "(listed, not timed); "
        )
        + "launch overheads, tails and the O(B) combine are not modeled.",
        "",
        (
            "| shape | implementation (modeled) | launches: modeled ms (bound) | GFLOP | HBM GB | L2 GB "
            "| modeled fwd+bwd ms | modeled / floor | modeled / floor4 |"
        ),
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ratios = {}
    for shape_name in shapes:
        results = {impl: model(impl, shape_name, machine, params) for impl in KERNELS}
        floor3, floor4 = results[FLOOR3].seconds, results[FLOOR4].seconds
        shape = get_shape(shape_name)
        for impl, result in results.items():
            launches = ", ".join(f"{launch.name} {_ms(launch.seconds)} ({launch.bound})" for launch in result.launches)
            lines.append(
                f"| {shape.describe()} | {impl} | {launches} | {result.flops / 1e9:,.1f} "
                f"| {result.hbm_bytes / 1e9:,.3f} "
                f"| {result.l2_bytes / 1e9:,.3f} | {_ms(result.seconds)} | {result.seconds / floor3:.2f}× "
                f"| {result.seconds / floor4:.2f}× |"
            )
        ratios[shape_name] = results[OURS].seconds / floor3
    lines += [
        "",
        "## The counts (formulas of the shape and of the kernels' tiles, above) — modeled",
        "",
    ]
    for impl, launches in KERNELS.items():
        for launch in launches:
            terms = "; ".join(f"{what}: `{formula}`" for what, formula in launch["hbm"].items())
            l2 = "; ".join(f"{what}: `{formula}`" for what, formula in launch["l2"].items()) or "—"
            lines.append(
                f"- {impl} · {launch['launch']}: {launch['gemms']} GEMM-equivalent(s) of 2·B·C·D FLOPs; "
                f"HBM: {terms}; L2: {l2}"
            )
    lines += [
        "",
        "Modeled ours / three-GEMM floor, bf16 fwd+bwd (the design's aim: ≤ 1.45× at L, XL, Shard): "
        + ", ".join(f"{name} {ratio:.2f}×" for name, ratio in ratios.items())
        + " — modeled.",
    ]
    return "\n".join(lines) + "\n", ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.model",
        description=("Modeled (not measured) roofline of the fused kernels beside the 3- and 4-GEMM floors."),
    )
    parser.add_argument(
        "--scratch-in-hbm", action="store_true", help="count the dℓ/dc scratch as HBM traffic instead of L2-resident"
    )
    parser.add_argument("--flops", type=float, default=Machine.flops_per_s, help="peak FLOP/s (default 790e12)")
    parser.add_argument("--bandwidth", type=float, default=Machine.hbm_bytes_per_s, help="HBM bytes/s (default 3.0e12)")
    parser.add_argument(
        "--block-c",
        type=int,
        default=Params.backward.block_c,
        help="the backward's class tile: dE atomics and E re-reads scale with C / block_c (default: the kernels')",
    )
    parser.add_argument(
        "--l2-bandwidth",
        type=float,
        default=None,
        help="time L2 traffic too, at this many bytes/s (a sensitivity check; default: not timed)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "model-h100.md", help="markdown file to write")
    args = parser.parse_args(argv)
    if (
        args.flops <= 0
        or args.bandwidth <= 0
        or args.block_c < 16
        or args.block_c & (args.block_c - 1)
        or (args.l2_bandwidth is not None and args.l2_bandwidth <= 0)
    ):
        parser.error("--flops, --bandwidth and --l2-bandwidth must be positive, --block-c a power of two ≥ 16")
    machine = Machine(l2_bytes_per_s=args.l2_bandwidth)
    if (args.flops, args.bandwidth) != (machine.flops_per_s, machine.hbm_bytes_per_s):
        machine = Machine(
            f"a card of {args.flops / 1e12:,.0f} TFLOP/s and {args.bandwidth / 1e12:,.2f} TB/s (modeled)",
            args.flops,
            args.bandwidth,
            args.l2_bandwidth,
        )
    backward = dataclasses.replace(Params.backward, block_c=args.block_c)
    text, _ = table(machine, Params(scratch_in_l2=not args.scratch_in_hbm, backward=backward))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
