"""One process or ``torchrun``: the process group, the device, the DDP backbone and the head.

With ``WORLD_SIZE > 1`` (set by ``torchrun``) the backbone is wrapped in DistributedDataParallel
and the class centers are split over the ranks by ``crfiqa_kernels.ShardedMarginCCSHead``; NCCL on
GPUs, gloo on CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

import crfiqa_kernels as ck

from .config import TrainConfig
from .losses import build_margin


@dataclass(frozen=True)
class Placement:
    rank: int
    world_size: int
    device: torch.device
    owns_group: bool = False  # the process group was created here (and is destroyed by teardown)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value is None else int(value)


def setup(device: str | torch.device | None = None) -> Placement:
    """Join the ``torchrun`` process group (or use the one already initialized); pick the device."""
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size == 1:
        chosen = torch.device(device) if device is not None else _default_device()
        return Placement(0, 1, chosen)
    local_rank = _env_int("LOCAL_RANK", 0)
    use_cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    chosen = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    return Placement(dist.get_rank(), dist.get_world_size(), chosen, owns_group)


def _default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def build_head(config: TrainConfig, num_classes: int, placement: Placement) -> nn.Module:
    """The class-center head with the config's margin family (a submodule: its running statistics
    are in the head's ``state_dict``): the fused op on one process, sharded over the ranks otherwise."""
    margin = build_margin(config.loss, config.loss_options)
    if placement.world_size == 1:
        if config.sample_rate < 1:
            raise ValueError(
                f"sample_rate {config.sample_rate} needs the sharded head: train with torchrun "
                "over more than one process, or with sample_rate 1"
            )
        head: nn.Module = ck.MarginCCSHead(
            num_classes, config.embedding_size, margin, margin_grad=config.margin_grad, backend=config.backend
        )
    else:
        head = ck.ShardedMarginCCSHead(
            num_classes,
            config.embedding_size,
            margin,
            sample_rate=config.sample_rate,
            margin_grad=config.margin_grad,
            backend=config.backend,
        )
    return head.to(placement.device)


def wrap_backbone(backbone: nn.Module, placement: Placement) -> nn.Module:
    if placement.world_size == 1:
        return backbone
    device_ids = [placement.device.index] if placement.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(backbone, device_ids=device_ids)


def grad_scaler(enabled: bool, placement: Placement) -> torch.amp.GradScaler:
    """The fp16 loss scaler. Over several ranks the overflow check is all-reduced (ShardedGradScaler):
    each rank's head shard has its own gradients, and every rank must skip a step together or none."""
    if not enabled or placement.world_size == 1:
        return torch.amp.GradScaler(placement.device.type, enabled=enabled)
    from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

    return ShardedGradScaler(placement.device.type)


def every_rank_has_images(has_images: bool, placement: Placement) -> bool:
    """Whether no rank's batch came out empty (every rank must then skip the step together)."""
    return _all_reduce_flag(has_images, placement, dist.ReduceOp.MIN)


def any_rank(flag: bool, placement: Placement) -> bool:
    """Whether ``flag`` is set on any rank (so that every rank takes the same branch)."""
    return _all_reduce_flag(flag, placement, dist.ReduceOp.MAX)


def _all_reduce_flag(flag: bool, placement: Placement, op: dist.ReduceOp.RedOpType) -> bool:
    """``flag`` combined over the ranks by ``op`` (MIN: set on every rank, MAX: on any)."""
    if placement.world_size == 1:
        return flag
    value = torch.tensor([int(flag)], device=placement.device)
    dist.all_reduce(value, op=op)
    return bool(value.item())


def barrier(placement: Placement) -> None:
    if placement.world_size > 1:
        dist.barrier()


def teardown(placement: Placement) -> None:
    if placement.owns_group and dist.is_initialized():
        dist.destroy_process_group()
