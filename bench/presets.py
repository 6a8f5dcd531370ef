"""Named sets of command-line options; options given explicitly override the preset's."""

from __future__ import annotations

LOSS_AND_FLOOR = (
    "authors_eager,authors_compiled,linear_cross_entropy,linear_cross_entropy_chunked,arcface_torch,"
    "liger,cut_cross_entropy,chunked,triton,cuda,floor,floor4"
)
# The implementations of the cpu-l and gpu-short presets (their comments below say why these).
CPU_PEERS_AND_FLOOR = "authors_eager,linear_cross_entropy,chunked,floor,floor4"
SHORT_RUN = (
    "authors_eager,authors_compiled,linear_cross_entropy,liger,cut_cross_entropy,floor,floor4,chunked,triton,cuda"
)


def _timing(
    device: str, shapes: str, dtypes: str, modes: str, impls: str, *, warmup: int, repeats: int, threads=None
) -> dict:
    """A preset that times ``impls`` on every shape × dtype × mode: ``warmup`` untimed calls, then
    ``repeats`` timed ones, on ``threads`` CPU threads where given (the options in the order --list shows)."""
    options = dict(device=device, shapes=shapes, dtypes=dtypes, modes=modes, impls=impls)
    if threads is not None:
        options["threads"] = threads
    return {**options, "warmup": warmup, "repeats": repeats}


PRESETS = {
    # The CPU path against the authors' formulation and PyTorch's linear CE at L,
    # beside the three-GEMM and four-product floors (floor, floor4).
    # A step costs about 1-2.5 s on 2 cores: 20 timed repeats after 1 warm-up keep the run near
    # 2 minutes on a quiet machine. (linear_cross_entropy_chunked is left out: over 15 s a step
    # at this shape on 2 cores.)
    "cpu-l": _timing("cpu", "L", "fp32", "fwd_bwd", CPU_PEERS_AND_FLOOR, threads=2, warmup=1, repeats=20),
    # Every implementation once at the tiny shape: checks that the harness runs end to end.
    "smoke": _timing("cpu", "tiny", "fp32,bf16", "fwd,fwd_bwd", "all", warmup=1, repeats=3),
    # On a GPU: every peer, every shape, both dtypes and modes.
    "gpu": _timing("cuda", "S,L,XL,Shard", "bf16,fp32", "fwd,fwd_bwd", LOSS_AND_FLOOR, warmup=5, repeats=30),
    # The device call's short run (tests/gpu/run_on_device.sh, DESIGN §8): S, L, XL in bf16 with the
    # fused peers, both floors and our three backends; 2 warm-ups, 10 repeats. The script
    # reuses it with --dtypes fp32 and --shapes Shard while time remains.
    "gpu-short": _timing("cuda", "S,L,XL", "bf16", "fwd,fwd_bwd", SHORT_RUN, warmup=2, repeats=10),
    # class_stats against faiss's flat top-2 search at C = 2,000,000, B = 4,096.
    "gpu-stats": _timing("cuda", "Stats", "fp32,bf16", "fwd", "class_stats,faiss_top2", warmup=3, repeats=20),
    # class_stats with labels (what crfiqa curate runs: one pass over the centers)
    # against faiss's exact top-2 search (IndexFlatIP) at C = 1,000,000 on 2 threads. A pass is
    # 4.2 TFLOP, tens of seconds here: no warm-up (nothing to compile or tune; the inputs are in
    # memory) and 2 timed repeats. class_stats without labels makes two passes (top class, then the
    # runner-up): add --impls class_stats to time it too. curate's samples/s: python -m bench.curate_speed.
    "cpu-stats": _timing(
        "cpu", "Stats-CPU", "fp32", "fwd", "class_stats_labelled,faiss_top2", threads=2, warmup=0, repeats=2
    ),
    # The largest C whose training step fits on the GPU.
    "gpu-scale": dict(device="cuda", scale=True, dtypes="fp32,bf16", impls="authors_eager,chunked,triton,cuda"),
}

DEFAULTS = dict(
    device="cpu",
    shapes="S",
    dtypes="fp32",
    modes="fwd,fwd_bwd",
    impls=LOSS_AND_FLOOR,
    threads=None,
    warmup=None,
    repeats=None,
    scale=False,
)
# Without a preset or an explicit count: warm-up and timed repeats per device type.
REPEATS = {"cpu": (1, 5), "cuda": (5, 30)}
