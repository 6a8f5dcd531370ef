"""The global batch of the sharded head: its layout over the ranks, validated on every rank, and
the all-gather of the rows with its adjoint, the reduce-scatter of their gradient."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..backends.contract import accumulate_dtype

# Position of the embeddings' dtype in the per-rank descriptor.
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class BatchLayout:
    """How the global batch is laid out over the ranks: ``sizes[r]`` rows from rank ``r``, in rank
    order; ``rank`` is this process's group rank."""

    sizes: tuple[int, ...]
    rank: int

    @property
    def start(self) -> int:
        return sum(self.sizes[: self.rank])

    @property
    def padded(self) -> int:
        return max(self.sizes)

    @property
    def uniform(self) -> bool:
        return len(set(self.sizes)) == 1

    def real_rows(self, device) -> torch.Tensor:
        """Mask of the real (not padding) rows of the (W·padded) gathered rows."""
        sizes = torch.tensor(self.sizes, device=device).unsqueeze(1)
        return (torch.arange(self.padded, device=device) < sizes).flatten()


def _check_local_inputs(embeddings, labels, embedding_size: int, device: torch.device) -> None:
    if not isinstance(embeddings, torch.Tensor):
        raise TypeError(f"local_embeddings must be a torch.Tensor, got {type(embeddings).__name__}")
    if embeddings.dtype not in _DTYPES:
        raise TypeError(f"local_embeddings must be float16, bfloat16, float32 or float64, got {embeddings.dtype}")
    if embeddings.dim() != 2 or embeddings.shape[1] != embedding_size:
        raise ValueError(f"local_embeddings must have shape (B, {embedding_size}), got {tuple(embeddings.shape)}")
    if embeddings.device != device:
        raise ValueError(f"local_embeddings is on {embeddings.device} but the head's shard is on {device}")
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"local_labels must be an integer torch.Tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"local_labels must be an integer tensor (class indices), got {labels.dtype}")
    if tuple(labels.shape) != (embeddings.shape[0],):
        raise ValueError(f"local_labels must have shape ({embeddings.shape[0]},), got {tuple(labels.shape)}")
    if labels.device != device:
        raise ValueError(f"local_labels is on {labels.device} but the head's shard is on {device}")


def exchange_layout(embeddings, labels, num_classes: int, embedding_size: int, device, group) -> BatchLayout:
    """Collective: gathers every rank's ``[B_r, dtype, min label, max label, input error]`` and
    validates the global batch. Every rank sees the same numbers and raises the same exception (the
    rank whose own inputs are malformed raises its detailed error), so no rank hangs.

    This is the step's one host synchronization (the batch sizes are needed on the host).
    """
    try:
        _check_local_inputs(embeddings, labels, embedding_size, device)
        error = None
    except (TypeError, ValueError) as caught:
        error = caught
    size, dtype_code = (0, 0) if error is not None else (embeddings.shape[0], _DTYPES.index(embeddings.dtype))
    descriptor = torch.tensor([size, dtype_code, 0, -1, int(error is not None)], device=device)
    if size:
        descriptor[2:4] = torch.stack([labels.min(), labels.max()])
    gathered = descriptor.new_empty(dist.get_world_size(group) * descriptor.numel())
    dist.all_gather_single(gathered, descriptor, group=group)
    rows = gathered.view(-1, descriptor.numel()).tolist()

    failed = [rank for rank, row in enumerate(rows) if row[4]]
    if error is not None:
        raise error
    if failed:
        raise ValueError(f"local_embeddings or local_labels of rank(s) {failed} are invalid (see the error there)")
    if len({row[1] for row in rows}) > 1:
        names = [str(_DTYPES[row[1]]) for row in rows]
        raise TypeError(f"local_embeddings must have the same dtype on every rank, got {names}")
    sizes = tuple(row[0] for row in rows)
    if sum(sizes) == 0:
        raise ValueError("the global batch is empty: every rank passed 0 rows")
    for rank, (_, _, low, high, _) in enumerate(rows):
        if low < -1:
            raise ValueError(f"local_labels must be ≥ -1 (-1 marks an ignored row), got {low} on rank {rank}")
        if high >= num_classes:
            raise ValueError(f"local_labels must be < num_classes = {num_classes}, got {high} on rank {rank}")
    return BatchLayout(sizes, dist.get_rank(group))


def gather_rows(local: torch.Tensor, layout: BatchLayout, group) -> torch.Tensor:
    """Collective: every rank's rows in rank order, (Σ B_r, ...). Local batches are padded to the
    largest one for the all-gather and the padding is dropped afterwards."""
    world_size = len(layout.sizes)
    if layout.uniform:
        padded = local.contiguous()
    else:
        padded = local.new_zeros((layout.padded, *local.shape[1:]))
        padded[: local.shape[0]] = local
    gathered = local.new_empty((world_size * layout.padded, *local.shape[1:]))
    dist.all_gather_single(gathered, padded, group=group)
    return gathered if layout.uniform else gathered[layout.real_rows(local.device)]


def scatter_sum(rows: torch.Tensor, layout: BatchLayout, group) -> torch.Tensor:
    """Collective, the adjoint of :func:`gather_rows`: the sum over ranks of ``rows`` (Σ B_r, ...),
    restricted to this rank's own rows, by one reduce-scatter."""
    world_size = len(layout.sizes)
    if layout.uniform:
        full = rows.contiguous()
    else:
        full = rows.new_zeros((world_size * layout.padded, *rows.shape[1:]))
        full[layout.real_rows(rows.device)] = rows
    own = rows.new_empty((layout.padded, *rows.shape[1:]))
    dist.reduce_scatter_single(own, full, group=group)
    return own[: layout.sizes[layout.rank]]


class GatherEmbeddings(torch.autograd.Function):
    """All-gather of the local embeddings into the global batch, upcast to the accumulate dtype
    (the gather moves the embeddings' own dtype; the gradient is summed in the accumulate dtype).

    Backward: rank ``k`` holds its shard's share ``G_k`` of ``∂L/∂E`` for all rows of the global
    batch, and ``∂L/∂E = Σ_k G_k`` (L is a sum over classes, split over the shards). The
    reduce-scatter gives rank ``r`` its rows of that sum, which are multiplied by the world size
    ``W``: DDP averages the backbone gradients over the ranks, and
    ``(1/W) Σ_r W·(∂L/∂E_r)(∂E_r/∂θ) = ∂L/∂θ``, the exact gradient of the global loss.
    """

    @staticmethod
    def forward(ctx, local, layout, group):
        ctx.layout, ctx.group, ctx.local_dtype = layout, group, local.dtype
        return gather_rows(local.detach(), layout, group).to(accumulate_dtype(local))

    @staticmethod
    def backward(ctx, grad):
        world_size = len(ctx.layout.sizes)
        own = scatter_sum(grad, ctx.layout, ctx.group)
        return (own * world_size).to(ctx.local_dtype), None, None
