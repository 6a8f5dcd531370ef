"""The kernel contract of DESIGN §3, shared by every backend.

A backend is a module with two functions over one shard of class centers. The kernels never see the
margin family: they compute the softmax statistics and gradients of the *non-target* logits
``z_ij = s·ν(c_ij)`` (``j ≠ y_i``; the target column is masked) and leave the target logit
``z_iy = τ_i(c_iy)`` to the op, in PyTorch.

``forward_partials(e_hat, weight, w_inv_norm, labels_local, logits) -> Partials``
    ``e_hat`` (B, D) normalized embeddings in the compute dtype; ``weight`` (C, D) raw class
    centers in their own dtype; ``w_inv_norm`` (C,) float32 ``1 / max(‖W_j‖, 1e-12)``;
    ``labels_local`` (B,) int64 in ``[-1, C)``, ``-1`` meaning "no target in this shard" (the
    column ``labels_local[i]`` is left out of the logits and of the nearest negative);
    ``logits`` the :class:`LogitParams` of the non-target logits.

``backward(e_hat, weight, w_inv_norm, labels_local, logits, lse, row_grad) -> (d_e_hat, d_weight)``
    ``lse`` (B,) and ``row_grad`` (B,) such that ``∂L/∂c_ij = row_grad_i · exp(z_ij − lse_i) ·
    s·ν'(c_ij)`` for every non-target ``j``: the global log-sum-exp and the upstream gradient ``g_i``
    of each row's loss (DESIGN §2), or — what the op passes, the same product since
    ``∂ℓ_i/∂lse_neg_i = 1 − p_iy`` — the non-target log-sum-exp and ``∂L/∂lse_neg_i``. ``row_grad`` is
    0 for ignored rows. The target column gets no gradient here (the op adds it). ``d_e_hat`` is
    (B, D) float32 (float64 for float64 inputs); ``d_weight`` is (C, D) in ``weight``'s dtype with
    the normalization Jacobian already applied. The cosine clamp is differentiated as the identity
    (it binds only within ``ε_c`` of ±1, where the rounding of the product already lies).

No backend allocates anything of size B × C.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

# ν of DESIGN §2, by name; the kernels take the position in this tuple as a compile-time mode.
NEGATIVE_KINDS = ("none", "filter", "curricular")


class LogitParams(NamedTuple):
    """What the kernels know of the margin: the non-target logits ``z_ij = s·ν(c_ij)`` with
    ``c_ij = clamp(ê_i·ŵ_j, −1 + ε_c, 1 − ε_c)``.

    ``s``          the scale, > 0
    ``cos_clamp``  ``ε_c`` in [0, 1)
    ``negative``   ``ν``: ``"none"`` (``ν(c) = c``), ``"filter"`` (``c > threshold_i`` gives
                   ``ν = 0``, ``ν' = 0``) or ``"curricular"`` (``c > threshold_i`` gives
                   ``ν = c·(t + c)``, ``ν' = t + 2c``)
    ``threshold``  (B,) float32 without gradient for ``"filter"`` and ``"curricular"``, else None
    ``t``          CurricularFace's running scalar

    Every field is a run-time value of the kernels but ``negative``, a compile-time mode. NNCCS is
    always the clamped cosine's maximum, whatever ``ν`` does to the logits.
    """

    s: float
    cos_clamp: float = 0.0
    negative: str = "none"
    threshold: torch.Tensor | None = None
    t: float = 0.0

    @property
    def negative_mode(self) -> int:
        """``negative`` as the kernels' mode number (its position in :data:`NEGATIVE_KINDS`)."""
        return NEGATIVE_KINDS.index(self.negative)

    def bounds(self) -> tuple[float, float]:
        """``(−1 + ε_c, 1 − ε_c)``, the clamp of every cosine."""
        return -1.0 + self.cos_clamp, 1.0 - self.cos_clamp


class Partials(NamedTuple):
    """Per-(split, row) partial results; every field has shape (S, B) for S ≥ 1 class splits.

    ``row_max``: max of the non-target logits over the split's classes (−inf if there are none);
    ``row_sumexp``: Σ exp(z − row_max) over the split's non-target classes (0 if none);
    ``target_cos``: the target cosine (clamped, before the margin) if the label is in the split, else NaN;
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


def check_logits(logits: LogitParams, batch: int, device: torch.device) -> None:
    """The fields of ``logits`` the kernels rely on (the op has validated the user's values)."""
    if logits.negative not in NEGATIVE_KINDS:
        raise ValueError(f"logits.negative must be one of {NEGATIVE_KINDS}, got {logits.negative!r}")
    if logits.negative != "none":
        threshold = logits.threshold
        if threshold is None or threshold.shape != (batch,) or threshold.device != device:
            raise ValueError(f"logits.threshold must be a ({batch},) tensor on {device} for {logits.negative!r}")
