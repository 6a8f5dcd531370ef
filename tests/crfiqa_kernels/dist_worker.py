"""The processes spawned by test_distributed.py: each joins a gloo group on the CPU, runs the named
scenarios with ShardedMarginCCSHead and saves what it saw to ``world{W}-rank{r}.pt`` for the parent
process, which compares it with the single-device op on the concatenated problem."""

from __future__ import annotations

import gc
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from crfiqa_kernels import AdaFace, CurricularFace, ElasticFace, Margin, MarginCCSHead, ShardedMarginCCSHead

from .oracle import compared_results

DIM = 24
CLASSES = 130
MARGIN = Margin.arcface(64.0, 0.5)
# Forward/backward problems per world size: (name, classes, rows per rank, precision), precision
# "fp32", "bf16" (bfloat16 embeddings) or "autocast" (float32 embeddings under CPU bf16 autocast).
EXACT_PROBLEMS = {
    1: (("c11", 11, (9,), "fp32"),),
    2: (("c130", 130, (7, 1), "fp32"), ("c130-bf16", 130, (4, 3), "bf16"), ("c130-autocast", 130, (4, 3), "autocast")),
    3: (("c11", 11, (1, 6, 4), "fp32"), ("c130-empty-rank", 130, (3, 0, 2), "fp32")),
}
SAMPLE_RATES = (0.25, 0.02)  # 0.02: fewer samples than positives, the sample is the positives
CHECKPOINT_SIZES = {1: (8,), 2: (5, 3), 3: (2, 3, 3)}
INIT_CLASSES, INIT_DIM = 9000, 8
# The families with running state, over 3 ranks for two steps from a mid-training state.
FAMILIES = ("adaface", "curricularface")
FAMILY_SIZES = (3, 4, 2)
FAMILY_STEPS = 2  # three initialization blocks of 4096 rows


def make_problem(classes: int, sizes, seed: int = 0) -> dict:
    """A global batch (rows of rank r at rank_rows(sizes, r)), class centers and labels with every
    fourth row ignored, the first and the last class used."""
    gen = torch.Generator().manual_seed(seed)
    batch = sum(sizes)
    labels = torch.randint(0, classes, (batch,), generator=gen)
    labels[0], labels[-1] = classes - 1, 0
    labels[2::4] = -1
    return {
        "sizes": tuple(sizes),
        "embeddings": torch.randn(batch, DIM, generator=gen),
        "weight": 0.01 * torch.randn(classes, DIM, generator=gen),
        "labels": labels,
    }


def rank_rows(sizes, rank: int) -> slice:
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def make_backbone() -> nn.Module:
    torch.manual_seed(11)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, DIM))


def backbone_inputs(batch: int) -> torch.Tensor:
    return torch.randn(batch, 6, generator=torch.Generator().manual_seed(5))


def _head(classes: int, weight=None, **options) -> ShardedMarginCCSHead:
    head = ShardedMarginCCSHead(classes, DIM, MARGIN, backend="chunked", **options)
    if weight is not None:
        head.load_full_state_dict({"weight": weight})
    return head


def _step(head: ShardedMarginCCSHead, problem: dict, rank: int, precision: str = "fp32") -> dict:
    """Forward and backward of this rank's rows; everything the parent compares."""
    rows = rank_rows(problem["sizes"], rank)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    embeddings = problem["embeddings"][rows].to(dtype, copy=True).requires_grad_()
    head.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "autocast"):
        out = head(embeddings, problem["labels"][rows])
    out.loss.backward()
    return {
        **compared_results(out, embeddings.grad, head.weight.grad.clone()),
        "class_start": head.class_start,
        "num_local": head.num_local,
        "num_sample": head.num_sample,
        "sampled": head.sampled_classes,
    }


def make_family(name: str):
    """AdaFace (its statistics near the problem's norms, √24 ≈ 4.9, moving fast) or CurricularFace
    (t = 0.25) in a mid-training state."""
    if name == "adaface":
        family = AdaFace(t_alpha=0.5)
        family.batch_mean.fill_(4.5)
        family.batch_std.fill_(0.5)
        return family
    family = CurricularFace()
    family.t.fill_(0.25)
    return family


def families(rank: int, world: int, workdir: Path) -> dict:
    results = {}
    for name in FAMILIES:
        problem = make_problem(CLASSES, FAMILY_SIZES, seed=3)
        head = ShardedMarginCCSHead(CLASSES, DIM, make_family(name), backend="chunked")
        head.load_full_state_dict({"weight": problem["weight"]})
        steps = [_step(head, problem, rank) for _ in range(FAMILY_STEPS)]
        results[name] = {"steps": steps, "state": {k: v.clone() for k, v in head.margin.named_buffers()}}
    return results


def elastic(rank: int, world: int, workdir: Path) -> dict:
    """ElasticFace's random margins with a different default generator on every rank: two steps."""
    torch.manual_seed(100 + rank)
    problem = make_problem(CLASSES, FAMILY_SIZES, seed=3)
    head = ShardedMarginCCSHead(CLASSES, DIM, ElasticFace(std=0.05), backend="chunked")
    head.load_full_state_dict({"weight": problem["weight"]})
    return {"losses": [_step(head, problem, rank)["loss"] for _ in range(2)]}


def exact(rank: int, world: int, workdir: Path) -> dict:
    results = {}
    for name, classes, sizes, precision in EXACT_PROBLEMS[world]:
        problem = make_problem(classes, sizes)
        results[name] = _step(_head(classes, problem["weight"]), problem, rank, precision)
    return results


def _error_of(call) -> str:
    try:
        call()
    except (TypeError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    return "no error"


def validation(rank: int, world: int, workdir: Path) -> dict:
    problem = make_problem(CLASSES, (3,) * world)
    head = _head(CLASSES, problem["weight"])
    rows = rank_rows(problem["sizes"], rank)
    embeddings, labels = problem["embeddings"][rows], problem["labels"][rows]
    too_large = labels.clone()
    too_large[0] = CLASSES if rank == world - 1 else too_large[0]
    below = labels.clone()
    below[1] = -2 if rank == 0 else below[1]
    wide = torch.randn(3, DIM + 1) if rank == 0 else embeddings
    mixed = embeddings.double() if rank == 0 else embeddings
    results = {
        "label_too_large": _error_of(lambda: head(embeddings, too_large)),
        "label_below_minus_one": _error_of(lambda: head(embeddings, below)),
        "wrong_width": _error_of(lambda: head(wide, labels)),
        "mixed_dtypes": _error_of(lambda: head(mixed, labels)),
        "empty_global_batch": _error_of(lambda: head(embeddings[:0], labels[:0])),
    }
    # The group is still usable afterwards: a valid step runs on every rank.
    results["after"] = _step(head, problem, rank)
    return results


def sampling(rank: int, world: int, workdir: Path) -> dict:
    problem = make_problem(CLASSES, (6,) * world, seed=1)
    results = {}
    for rate in SAMPLE_RATES:
        torch.manual_seed(100 + rank)
        head = _head(CLASSES, problem["weight"], sample_rate=rate)
        results[rate] = _step(head, problem, rank)
    head.eval()
    results["eval"] = _step(head, problem, rank)
    return results


def init(rank: int, world: int, workdir: Path) -> dict:
    torch.manual_seed(0)
    head = ShardedMarginCCSHead(INIT_CLASSES, INIT_DIM)
    return {
        "full": head.gather_full_state_dict(),
        "shard": head.weight.detach().clone(),
        "class_start": head.class_start,
        "num_local": head.num_local,
    }


def checkpoint_save(rank: int, world: int, workdir: Path) -> dict:
    torch.manual_seed(21)
    head = _head(CLASSES)
    head.save_checkpoint(workdir / "head.pt")
    torch.save(head.state_dict(), workdir / f"shard-{rank}.pt")
    return {
        "state_dict": head.state_dict(),
        "unwritable": _error_of_os(lambda: head.save_checkpoint(workdir / "missing-dir" / "head.pt")),
        "step": _step(head, make_problem(CLASSES, CHECKPOINT_SIZES[world], seed=2), rank),
    }


def _error_of_os(call) -> str:
    try:
        call()
    except OSError as error:
        return type(error).__name__
    return "no error"


def checkpoint_load(rank: int, world: int, workdir: Path) -> dict:
    torch.manual_seed(22)
    head = _head(CLASSES)
    head.load_checkpoint(workdir / "head.pt")
    loaded = head.weight.detach().clone()
    results = {"step": _step(head, make_problem(CLASSES, CHECKPOINT_SIZES[world], seed=2), rank)}
    if rank < 2:  # the 2-rank run saved shards 0 and 1: their layout differs from this one
        shard = torch.load(workdir / f"shard-{rank}.pt", weights_only=True)
        results["mismatched_shard"] = _error_of(lambda: head.load_state_dict(shard))
    # A shard of the same size but another block is refused before anything is copied.
    shifted = {**head.state_dict(), "_extra_state": {**head.get_extra_state(), "class_start": head.class_start + 1}}
    shifted["weight"] = torch.zeros_like(head.weight)
    results["shifted_shard"] = _error_of(lambda: head.load_state_dict(shifted))
    results["unchanged"] = torch.equal(head.weight.detach(), loaded)
    single = MarginCCSHead(CLASSES, DIM)
    head.load_full_state_dict(single.state_dict())
    results["single_device_block"] = torch.equal(
        head.weight.detach(), single.weight.detach()[head.class_start : head.class_start + head.num_local]
    )
    return results


def ddp(rank: int, world: int, workdir: Path) -> dict:
    problem = make_problem(CLASSES, (5, 2))
    rows = rank_rows(problem["sizes"], rank)
    backbone = nn.parallel.DistributedDataParallel(make_backbone())
    head = _head(CLASSES, problem["weight"])
    out = head(backbone(backbone_inputs(sum(problem["sizes"]))[rows]), problem["labels"][rows])
    out.loss.backward()
    return {
        "backbone_grads": {name: param.grad.clone() for name, param in backbone.module.named_parameters()},
        "grad_weight": head.weight.grad.clone(),
    }


SCENARIOS = {
    "exact": exact,
    "validation": validation,
    "sampling": sampling,
    "init": init,
    "checkpoint_save": checkpoint_save,
    "checkpoint_load": checkpoint_load,
    "ddp": ddp,
    "families": families,
    "elastic": elastic,
}


def run(rank: int, world: int, workdir: str, scenarios: tuple[str, ...]) -> None:
    """``torch.multiprocessing.spawn`` entry point."""
    torch.set_num_threads(1)
    workdir = Path(workdir)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{workdir / f'init-{world}'}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=60),
    )
    try:
        results = {name: SCENARIOS[name](rank, world, workdir) for name in scenarios}
        torch.save(results, workdir / f"world{world}-rank{rank}.pt")
    finally:
        # A DDP module still alive when a gloo group is destroyed can abort the process at exit.
        gc.collect()
        dist.destroy_process_group()
