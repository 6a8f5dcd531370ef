"""The kernel contract of DESIGN §3, shared by every backend.

A backend is a module with two functions over one shard of class centers:

``forward_partials(e_hat, weight, w_inv_norm, labels_local, margin) -> Partials``
    ``e_hat`` (B, D) normalized embeddings in the compute dtype; ``weight`` (C, D) raw class
    centers in their own dtype; ``w_inv_norm`` (C,) float32 ``1 / max(‖W_j‖, 1e-12)``;
    ``labels_local`` (B,) int64 in ``[-1, C)``, ``-1`` meaning "no target in this shard";
    ``margin`` anything with float attributes ``s, m1, m2, m3``.

``backward(e_hat, weight, w_inv_norm, labels_local, margin, lse, row_grad, margin_grad)
-> (d_e_hat, d_weight)``
    ``lse`` (B,) the global log-sum-exp of each row, ``row_grad`` (B,) the upstream gradient of each
    row's loss (0 for ignored rows), ``margin_grad`` ``"exact"`` or ``"straight_through"``.
    ``d_e_hat`` is (B, D) float32 (float64 for float64 inputs); ``d_weight`` is (C, D) in ``weight``'s dtype with the
    normalization Jacobian already applied.

No backend allocates anything of size B × C.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

MARGIN_GRADS = ("exact", "straight_through")


class Partials(NamedTuple):
    """Per-(split, row) partial results; every field has shape (S, B) for S ≥ 1 class splits.

    ``row_max``: max of the logits over the split's classes (−inf for an empty split);
    ``row_sumexp``: Σ exp(z − row_max) over the split;
    ``target_cos``: the target cosine (before the margin) if the label is in the split, else NaN;
    ``nn_cos``: max cosine over the split's classes other than the label (−inf if none);
    ``nn_index``: its local class index (int64, lowest on ties).
    """

    row_max: torch.Tensor
    row_sumexp: torch.Tensor
    target_cos: torch.Tensor
    nn_cos: torch.Tensor
    nn_index: torch.Tensor


def accumulate_dtype(e_hat: torch.Tensor) -> torch.dtype:
    """float64 stays float64 (the oracle's precision); everything else accumulates in float32."""
    return torch.float64 if e_hat.dtype == torch.float64 else torch.float32
