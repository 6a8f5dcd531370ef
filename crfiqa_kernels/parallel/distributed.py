"""``ShardedMarginCCSHead``: the class-center head, model-parallel over ``torch.distributed``.

Rank ``r`` of a group of ``W`` ranks owns the contiguous block of classes ``[class_start,
class_start + num_local)`` (:func:`~crfiqa_kernels.parallel.sharding.class_block`). One step, for a global
batch of ``B = Σ_r B_r`` rows:

1. all-gather of a descriptor per rank (batch size, dtype, label range, local input errors): every
   rank validates the *global* batch from the same numbers and raises the same error, so no rank is
   left waiting in a collective;
2. all-gather of the embeddings (padded to the largest local batch) and of the labels: O(B·D);
3. the target cosine ``c_iy`` on the rank owning ``y_i`` (an O(B·D) gather), summed over the group
   so every rank holds it (O(B)), and the margin family's target terms from it, the same on every
   rank;
4. the backend's forward partials of the non-target logits over the local shard (DESIGN §3),
   combined by :func:`~crfiqa_kernels.combine.combine_partials` with a reducer that reduces the split
   dimension and then all-reduces MAX / SUM / MIN over the group: O(B); then
   ``ℓ_i = logaddexp(lse_neg_i, z_iy) − z_iy``;
5. backward: the backend's backward with the *global* ``lse_neg`` and ``∂L/∂lse_neg`` gives the exact
   local ``dW`` and this shard's share of ``dê`` for every row of the global batch, the target
   column's term reaches ``ê`` and ``W`` on the owning rank only (the sum's adjoint), and one
   reduce-scatter sums the shares and hands each rank its own rows: O(B·D).

Nothing of size ``B × C`` is ever built or sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .. import backends
from ..atomic_files import save_atomically
from ..backends.contract import LogitParams, accumulate_dtype
from ..combine import RowStats, SplitReducer, combine_partials
from ..margins import Margin, MarginFamily, TargetTerms
from ..operands import compute_dtype_of, normalize_operands, resolve_backend, target_cosine
from ..results import MarginCCSOutput
from ..row_loss import (
    clamp_cosine,
    labelled,
    labelled_only,
    logit_params,
    margin_row_loss,
    reduce_rows,
    target_terms,
)
from ..validation import check_head_arguments
from .batch_exchange import GatherEmbeddings, exchange_layout, gather_rows
from .negative_sampling import labels_in_sample, sample_classes
from .sharding import SEED_BITS, class_block, full_weight, gather_blocks, normal_rows

BACKENDS = tuple(name for name in backends.NAMES if name != "reference")


def _collective_device(group) -> torch.device:
    """Where small tensors for the group's collectives live: NCCL needs CUDA tensors."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _shared_seed(group) -> int:
    """A seed drawn from group rank 0's default generator, the same on every rank (every rank
    draws one, so the ranks' generators stay in step)."""
    seed = torch.randint(2**SEED_BITS, (1,)).to(_collective_device(group))
    dist.broadcast(seed, group=group, group_src=0)
    return int(seed)


class _GroupReducer(SplitReducer):
    """Reduces the split dimension, then all-reduces over the process group (O(B) per call)."""

    def __init__(self, group) -> None:
        self.group = group

    def _all_reduce(self, tensor: torch.Tensor, op) -> torch.Tensor:
        dist.all_reduce(tensor, op=op, group=self.group)
        return tensor

    def max(self, t: torch.Tensor) -> torch.Tensor:
        return self._all_reduce(super().max(t), dist.ReduceOp.MAX)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        return self._all_reduce(super().sum(t), dist.ReduceOp.SUM)

    def min(self, t: torch.Tensor) -> torch.Tensor:
        return self._all_reduce(super().min(t), dist.ReduceOp.MIN)


@dataclass(frozen=True)
class _ShardConfig:
    backend: str
    logits: LogitParams
    compute_dtype: torch.dtype
    class_offset: int
    group: object


def _combined_rows(e_hat, weight, w_inv_norm, labels_local, config: _ShardConfig) -> RowStats:
    """Collective: the backend's forward partials over this shard, combined over the group."""
    with torch.autocast(e_hat.device.type, enabled=False):
        partials = backends.get(config.backend).forward_partials(
            e_hat.to(config.compute_dtype), weight, w_inv_norm, labels_local, config.logits
        )
    return combine_partials(partials, config.class_offset, _GroupReducer(config.group))


class _SumOverGroup(torch.autograd.Function):
    """``Σ_r x_r`` over the group (an all-reduce of B values) whose adjoint is the identity: every
    rank computes the same loss from the sum and backpropagates it, so each rank's ``x_r`` receives
    ``∂L/∂Σ`` exactly once — the target cosine's gradient reaches ``ê`` and ``W_{y_i}`` on the rank
    owning ``y_i`` only (the others contributed 0 to row ``i``)."""

    @staticmethod
    def forward(ctx, x, group):
        total = x.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
        return total

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _replicated_share(x: torch.Tensor, world_size: int) -> torch.Tensor:
    """``x`` with ``1/W`` of its gradient: a value every rank computes alike from the gathered
    embeddings (the norms the family reads) sends each rank's share of its gradient into the
    reduce-scatter of :class:`~.batch_exchange.GatherEmbeddings`, which sums the ``W`` shares."""
    return x.detach() + (x - x.detach()) / world_size


class _ShardedRows(torch.autograd.Function):
    """Per-row ``lse_neg`` and statistics of the global batch over the classes of all shards."""

    @staticmethod
    def forward(ctx, e_hat, weight, w_inv_norm, labels_local, valid, config):
        stats = _combined_rows(e_hat, weight, w_inv_norm, labels_local, config)
        ctx.save_for_backward(e_hat, weight, w_inv_norm, labels_local, valid, stats.lse)
        ctx.config = config
        ctx.mark_non_differentiable(stats.target_cos, stats.nn_cos, stats.nn_index)
        return stats.lse, stats.target_cos, stats.nn_cos, stats.nn_index

    @staticmethod
    def backward(ctx, grad_lse_neg, grad_ccs, grad_nnccs, grad_nn_index):
        e_hat, weight, w_inv_norm, labels_local, valid, lse_neg = ctx.saved_tensors
        config = ctx.config
        # ∂L/∂c_ij = ∂L/∂lse_neg_i · exp(z_ij − lse_neg_i) · s·ν'(c_ij) for the non-target j, with
        # the *global* lse_neg (the derivative of a log-sum-exp is the softmax of its terms).
        # Restricted to this shard's classes j, the backend's backward gives the shard's exact dW
        # and its share of dê = Σ_j ∂L/∂c_ij ŵ_j. Every rank holds the same ∂L/∂lse_neg (the loss
        # is the same on every rank). Ignored rows have no gradient, whatever flows in.
        row_grad = labelled_only(grad_lse_neg, valid)
        with torch.autocast(e_hat.device.type, enabled=False):
            d_e_hat, d_weight = backends.get(config.backend).backward(
                e_hat.to(config.compute_dtype), weight, w_inv_norm, labels_local, config.logits, lse_neg, row_grad
            )
        return d_e_hat.to(e_hat.dtype), d_weight, None, None, None, None


class ShardedMarginCCSHead(nn.Module):
    """The class-center head with the classes split over the ranks of ``process_group``.

    Rank ``r`` owns the contiguous classes ``[class_start, class_start + num_local)``; the block
    sizes differ by at most one and the lower ranks take the extra classes (``num_classes`` must be
    at least the world size). ``weight`` is the local shard (num_local, D), initialized N(0, 0.01)
    block by block from a seed drawn on group rank 0 (:func:`~crfiqa_kernels.parallel.sharding.normal_rows`),
    so after the same ``torch.manual_seed`` the full matrix is the same for every world size.

    ``forward(local_embeddings, local_labels)`` is a collective: every rank of the group calls it,
    with its own batch (sizes may differ, even 0 rows). It returns :class:`MarginCCSOutput`:

    - ``loss``: the mean of ℓ_i over the labelled rows of the *global* batch (the concatenation of
      the ranks' batches in rank order), the same value on every rank;
    - ``ccs``, ``nnccs``, ``nn_index`` of the local rows, ``nn_index`` a global class id.

    Gradients (every rank backpropagates the returned loss): ``weight.grad`` is the exact gradient
    of the global loss for the local shard; ``local_embeddings`` receives **world size ×** its rows
    of the gradient of the global loss, so that DDP's averaging of a DDP-wrapped backbone's
    gradients over the ranks yields exactly the gradient of the global loss. Do not wrap the head
    itself in DDP: its shards are not replicas.

    Traffic per step (``B`` global rows): the embeddings are all-gathered in their own dtype and
    their gradients reduce-scattered in float32 (O(B·D)); labels, a descriptor per rank and five
    all-reduces of B values for the combine step are O(B); never O(B·C). Tensors must live where the
    group's backend communicates: CUDA tensors with NCCL, CPU tensors with gloo.

    Negative sampling (``sample_rate < 1``, while training): the cross-entropy runs over the
    positives of the global batch in this shard plus uniformly random other classes,
    ``num_sample = ceil(sample_rate · num_local)`` classes at least (the positives are always
    kept); the softmax denominator sums over the sample only. CCS, NNCCS and ``nn_index`` stay
    exact: a second, forward-only pass over the whole shard computes them. Saves: the backward's
    two GEMMs (``G·W`` and ``Gᵀ·E``) and the cross-entropy's forward run on ``num_sample`` classes
    instead of ``num_local``, so the head costs about ``1 + 2·sample_rate`` instead of 3 GEMMs of the
    full shard; ``weight.grad`` is zero outside the sample (``sampled_classes`` holds the sample's
    global ids). Costs: the statistics pass still reads the whole shard once per step (a forward
    GEMM without its backward), the sampled rows of ``weight`` are copied (num_sample × D), five
    more O(B) all-reduces, and one host synchronization to count the positives; ``weight.grad``
    remains a dense tensor, so an optimizer with momentum or weight decay still moves the rows
    outside the sample. In eval mode the cross-entropy is over every class.

    Checkpoints: ``state_dict()`` is this rank's shard with its metadata (num_classes, class_start,
    num_local) and loads only into the same layout. :meth:`gather_full_state_dict` /
    :meth:`save_checkpoint` produce the full ``{"weight": (num_classes, D)}`` (the state dict of the
    single-device :class:`~crfiqa_kernels.MarginCCSHead`), which :meth:`load_full_state_dict` /
    :meth:`load_checkpoint` slice for any world size.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        margin: MarginFamily | None = None,
        process_group=None,
        sample_rate: float = 1.0,
        *,
        margin_grad: str = "exact",
        interclass_filter: float | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        margin = Margin() if margin is None else margin
        check_head_arguments(num_classes, embedding_size, margin, margin_grad, backend, BACKENDS, interclass_filter)
        self.margin = margin
        self.interclass_filter = interclass_filter
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)):
            raise TypeError(f"sample_rate must be a real number, got {type(sample_rate).__name__}")
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must lie in (0, 1], got {sample_rate}")
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("ShardedMarginCCSHead needs an initialized torch.distributed process group")
        world_size, rank = dist.get_world_size(process_group), dist.get_rank(process_group)
        if rank < 0:
            raise ValueError("this process is not a member of process_group")
        if num_classes < world_size:
            raise ValueError(f"num_classes ({num_classes}) must be at least the world size ({world_size})")

        self.num_classes, self.embedding_size = num_classes, embedding_size
        self.process_group = process_group
        self.margin_grad, self.backend = margin_grad, backend
        self.sample_rate = float(sample_rate)
        self.class_start, self.num_local = class_block(num_classes, world_size, rank)
        self.num_sample = min(self.num_local, math.ceil(self.sample_rate * self.num_local))
        self.sampled_classes: torch.Tensor | None = None
        seed = _shared_seed(process_group)
        self.weight = nn.Parameter(normal_rows(self.class_start, self.num_local, embedding_size, seed))
        self.register_load_state_dict_pre_hook(self._check_shard_state)

    def _target_terms(self, target_cos, norms, valid) -> TargetTerms:
        """The family's terms, the same on every rank: a family that draws random numbers draws
        them from a generator seeded by group rank 0 (the default generators stay untouched)."""
        if not self.margin.draws_random:
            return target_terms(self.margin, target_cos, norms, valid, self.margin_grad)
        seed = _shared_seed(self.process_group)  # advances every rank's generator alike, once a step
        devices = [target_cos.device] if target_cos.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return target_terms(self.margin, target_cos, norms, valid, self.margin_grad)

    def forward(self, local_embeddings: torch.Tensor, local_labels: torch.Tensor) -> MarginCCSOutput:
        group = self.process_group
        layout = exchange_layout(
            local_embeddings, local_labels, self.num_classes, self.embedding_size, self.weight.device, group
        )
        embeddings = GatherEmbeddings.apply(local_embeddings, layout, group)
        labels = gather_rows(local_labels.long(), layout, group)
        valid = labelled(labels)
        mine = (labels >= self.class_start) & (labels < self.class_start + self.num_local)
        labels_local = torch.where(mine, labels - self.class_start, -1)
        compute_dtype = compute_dtype_of(local_embeddings)
        world_size = len(layout.sizes)
        if not torch.compiler.is_compiling():
            self.margin.check_batch(labels.shape[0], labels.device, values=True)

        e_hat, w_inv_norm = normalize_operands(embeddings, self.weight)
        # The target terms, the same on every rank: c_iy from the owning rank, τ_i of the family.
        target_cos = clamp_cosine(
            _SumOverGroup.apply(target_cosine(e_hat, self.weight, labels_local, compute_dtype), group), self.margin
        )
        norms = _replicated_share(embeddings.to(accumulate_dtype(embeddings)).norm(dim=1), world_size)
        terms = self._target_terms(target_cos, norms, valid)
        config = _ShardConfig(
            resolve_backend(self.backend, local_embeddings.device),
            logit_params(self.margin, terms, self.interclass_filter, labels.shape[0], labels.device),
            compute_dtype,
            self.class_start,
            group,
        )
        if self.training and self.num_sample < self.num_local:
            sampled = sample_classes(labels_local, self.num_local, self.num_sample)
            self.sampled_classes = sampled + self.class_start
            lse_neg, _, _, _ = _ShardedRows.apply(
                e_hat,
                self.weight.index_select(0, sampled),
                w_inv_norm[sampled],
                labels_in_sample(labels_local, sampled, self.num_local),
                valid,
                config,
            )
            with torch.no_grad():
                stats = _combined_rows(e_hat, self.weight, w_inv_norm, labels_local, config)
            ccs, nnccs, nn_index = stats.target_cos, stats.nn_cos, stats.nn_index
        else:
            self.sampled_classes = None
            lse_neg, ccs, nnccs, nn_index = _ShardedRows.apply(
                e_hat, self.weight, w_inv_norm, labels_local, valid, config
            )
        loss = reduce_rows(margin_row_loss(lse_neg, terms.target_logit, valid), valid, "mean", terms.extra_loss)
        rows = slice(layout.start, layout.start + layout.sizes[layout.rank])
        return MarginCCSOutput(loss, ccs[rows], nnccs[rows], nn_index[rows])

    # Checkpoints ------------------------------------------------------------------------------

    def get_extra_state(self) -> dict:
        return {"num_classes": self.num_classes, "class_start": self.class_start, "num_local": self.num_local}

    def set_extra_state(self, state) -> None:
        self._check_block(state)

    def _check_shard_state(self, module, state_dict, prefix, *args) -> None:
        # Runs before load_state_dict copies anything, so a mismatched shard changes nothing.
        key = prefix + "_extra_state"
        if key in state_dict:
            self._check_block(state_dict[key])

    def _check_block(self, state) -> None:
        if state != self.get_extra_state():
            raise ValueError(
                f"this state dict is the shard {state} but this rank holds {self.get_extra_state()}; "
                "load a full state dict (gather_full_state_dict / save_checkpoint) with "
                "load_full_state_dict / load_checkpoint to change the number of ranks"
            )

    def gather_full_state_dict(self) -> dict | None:
        """Collective: ``{"weight": (num_classes, D)}`` on the CPU of group rank 0, ``None`` on the
        other ranks. It is also the state dict of a single-device ``MarginCCSHead``."""
        full = gather_blocks(self.weight, self.num_classes, self.process_group)
        return None if full is None else {"weight": full}

    def save_checkpoint(self, path) -> None:
        """Collective: group rank 0 writes the full state dict to ``path`` atomically (temporary
        file + ``os.replace``). Returns on every rank once the file is complete; if the write fails,
        every rank raises."""
        state = self.gather_full_state_dict()
        error = None
        if state is not None:
            try:
                save_atomically(state, path)
            except OSError as caught:
                error = caught
        failed = torch.tensor([int(error is not None)], device=_collective_device(self.process_group))
        dist.broadcast(failed, group=self.process_group, group_src=0)
        if error is not None:
            raise error
        if failed.item():
            raise OSError(f"group rank 0 could not write the checkpoint {path}")

    def load_full_state_dict(self, state_dict) -> None:
        """Copy this rank's block of a full ``{"weight": (num_classes, D)}`` state dict (saved with
        any number of ranks, or by a single-device ``MarginCCSHead``). Not a collective."""
        weight = full_weight(state_dict, self.num_classes, self.embedding_size)
        with torch.no_grad():
            self.weight.copy_(weight[self.class_start : self.class_start + self.num_local])

    def load_checkpoint(self, path) -> None:
        """Load a file written by :meth:`save_checkpoint` (``weights_only=True``, memory-mapped, so
        each rank reads only its block). Not a collective."""
        self.load_full_state_dict(torch.load(path, map_location="cpu", weights_only=True, mmap=True))

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_size={self.embedding_size}, "
            f"class_start={self.class_start}, num_local={self.num_local}, "
            f"sample_rate={self.sample_rate}, interclass_filter={self.interclass_filter}"
        )
