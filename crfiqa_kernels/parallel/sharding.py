"""Contiguous class blocks, a world-size-independent initialization and the checkpoint helpers of
:class:`~crfiqa_kernels.distributed.ShardedMarginCCSHead`.

A full (world-size-independent) state dict is ``{"weight": (num_classes, D) tensor}``: exactly the
state dict of the single-device :class:`~crfiqa_kernels.MarginCCSHead`, so checkpoints move freely
between one device, N ranks and M ranks.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist

# The initialization draws the rows of the full matrix in blocks of INIT_BLOCK_ROWS classes, block b
# from a generator seeded with (seed << BLOCK_INDEX_BITS) + b; seeds are below 2**SEED_BITS, so the
# generator seeds of different (seed, block) pairs never coincide and stay below 2**63.
INIT_BLOCK_ROWS = 4096
BLOCK_INDEX_BITS = 24
SEED_BITS = 63 - BLOCK_INDEX_BITS


def class_block(num_classes: int, world_size: int, rank: int) -> tuple[int, int]:
    """``(start, count)`` of ``rank``'s contiguous block of classes: the counts differ by at most
    one and the lower ranks take the extra classes."""
    base, extra = divmod(num_classes, world_size)
    return rank * base + min(rank, extra), base + (1 if rank < extra else 0)


def normal_rows(start: int, count: int, dim: int, seed: int, std: float = 0.01) -> torch.Tensor:
    """Rows ``[start, start + count)`` of an N(0, std²) float32 matrix whose block of rows
    ``[b·INIT_BLOCK_ROWS, (b+1)·INIT_BLOCK_ROWS)`` is drawn from a generator seeded by ``(seed, b)``.

    Any partition of the classes into blocks therefore yields the same full matrix: the
    initialization does not depend on the world size.
    """
    if not 0 <= seed < 2**SEED_BITS:
        raise ValueError(f"seed must lie in [0, 2**{SEED_BITS}), got {seed}")
    first, last = start // INIT_BLOCK_ROWS, (start + count - 1) // INIT_BLOCK_ROWS
    if last >= 2**BLOCK_INDEX_BITS:
        raise ValueError(f"at most {2**BLOCK_INDEX_BITS * INIT_BLOCK_ROWS} classes are supported")
    parts = []
    for block in range(first, last + 1):
        generator = torch.Generator().manual_seed((seed << BLOCK_INDEX_BITS) + block)
        rows = torch.randn(INIT_BLOCK_ROWS, dim, generator=generator)
        offset = block * INIT_BLOCK_ROWS
        parts.append(rows[max(start - offset, 0) : min(start + count - offset, INIT_BLOCK_ROWS)])
    return torch.cat(parts).mul_(std)


def gather_blocks(shard: torch.Tensor, num_classes: int, group=None) -> torch.Tensor | None:
    """Collective: the (num_classes, D) matrix of all ranks' blocks, on the CPU of group rank 0
    (``None`` on the other ranks). Rank 0 receives one block at a time, so its device never holds
    more than one shard; every other rank sends its shard once (point-to-point)."""
    world_size, rank = dist.get_world_size(group), dist.get_rank(group)
    if rank != 0:
        dist.send(shard.detach().contiguous(), group=group, group_dst=0)
        return None
    full = torch.empty(num_classes, shard.shape[1], dtype=shard.dtype)
    for source in range(world_size):
        start, count = class_block(num_classes, world_size, source)
        if source == 0:
            block = shard.detach()
        else:
            block = shard.new_empty(count, shard.shape[1])
            dist.recv(block, group=group, group_src=source)
        full[start : start + count] = block.cpu()
    return full


def full_weight(state_dict, num_classes: int, embedding_size: int) -> torch.Tensor:
    """The (num_classes, embedding_size) ``weight`` of a full state dict, validated."""
    if not isinstance(state_dict, Mapping) or set(state_dict) != {"weight"}:
        keys = sorted(state_dict) if isinstance(state_dict, Mapping) else type(state_dict).__name__
        raise ValueError(f"state_dict must be a full head state dict holding exactly the key 'weight', got {keys}")
    weight = state_dict["weight"]
    expected = (num_classes, embedding_size)
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != expected:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"state_dict['weight'] must have shape {expected} (num_classes, D), got {shape}")
    return weight
