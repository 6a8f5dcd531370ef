"""The ``chunked`` backend: the kernel contract in PyTorch, tiled over classes.

Each tile of ``T`` classes costs one (B, T) buffer, reused in place for the cosines, the logits and
the probabilities, so the transient memory is bounded by ``TILE_ELEMENTS`` whatever ``C`` is. It is
the CPU path and a fallback on any device; it is deterministic.
"""

from __future__ import annotations

import torch

from .contract import Partials, accumulate_dtype

# Upper bound on the elements of the (B, T) tile buffer; T = TILE_ELEMENTS // B, at least MIN_TILE.
TILE_ELEMENTS = 1 << 21
MIN_TILE = 16


def available(device: torch.device) -> bool:
    return True


def tile_ranges(num_classes: int, batch: int):
    tile = max(MIN_TILE, TILE_ELEMENTS // max(batch, 1))
    for start in range(0, num_classes, tile):
        yield start, min(start + tile, num_classes)


def _product(a, b, *, summed_across_tiles=False):
    """``a @ b`` of operands in the compute dtype, accumulated in fp32 and returned in the accumulate
    dtype. A half-precision result is rounded once: on CUDA never (``out_dtype``: a tensor core's
    contract, DESIGN §2); on a CPU, where PyTorch's half GEMMs return half precision and fp32 products
    cost several times as much, only for values complete within a tile (cosines, ∂ℓ/∂ŵ_j), rounded
    exactly as the same-dtype reference rounds them. ∂ℓ/∂ê sums over tiles whose partial sums cancel
    (the target's term against the others): ``summed_across_tiles`` keeps those in fp32, or the
    error would grow with the number of tiles. The caller's autocast, already applied to the
    operands' dtype, is switched off."""
    acc = accumulate_dtype(a)
    with torch.autocast(a.device.type, enabled=False):
        if a.is_cuda and a.dtype in (torch.float16, torch.bfloat16):
            return torch.mm(a, b, out_dtype=acc)
        if summed_across_tiles:
            return a.to(acc) @ b.to(acc)
        return (a @ b).to(acc)


def _normalized_tile(e_hat, weight, w_inv_norm, start, stop):
    """ŵ_j = W_j / max(‖W_j‖, 1e-12) for the tile's classes, in the accumulate dtype. Normalized
    before any rounding to the compute dtype: float16 holds neither a raw W of norm ≳ 6.5e4 nor
    ∂ℓ/∂c_ij / ‖W_j‖ for a small W_j."""
    acc = accumulate_dtype(e_hat)
    return weight[start:stop].to(acc) * w_inv_norm[start:stop].to(acc).unsqueeze(1)


def _cosine_tile(e_hat, w_hat):
    """clamp(ê · ŵ_jᵀ, -1, 1) for the tile's classes, ŵ rounded to ê's dtype."""
    return _product(e_hat, w_hat.to(e_hat.dtype).T).clamp_(-1.0, 1.0)


def _target_column(labels_local, start, stop):
    """(in_tile, column) of each row's label relative to the tile; column is clamped to be valid."""
    in_tile = (labels_local >= start) & (labels_local < stop)
    column = (labels_local - start).clamp(0, stop - start - 1).unsqueeze(1)
    return in_tile, column


def _put_column(buffer, column, in_tile, value):
    """buffer[i, column_i] = value_i where in_tile_i; other rows keep their entry."""
    kept = buffer.gather(1, column).squeeze(1)
    buffer.scatter_(1, column, torch.where(in_tile, value, kept).unsqueeze(1))


def forward_partials(e_hat, weight, w_inv_norm, labels_local, margin) -> Partials:
    fields: list[list[torch.Tensor]] = [[] for _ in Partials._fields]
    for start, stop in tile_ranges(weight.shape[0], e_hat.shape[0]):
        buffer = _cosine_tile(e_hat, _normalized_tile(e_hat, weight, w_inv_norm, start, stop))
        in_tile, column = _target_column(labels_local, start, stop)
        target_cos = buffer.gather(1, column).squeeze(1)

        # Nearest negative: the target column is excluded with −inf.
        _put_column(buffer, column, in_tile, torch.full_like(target_cos, float("-inf")))
        nn_cos, nn_index = buffer.max(dim=1)

        # Logits z: s·c everywhere, s·φ(c) at the target, so the row's largest is s·NNCCS or s·φ(CCS)
        # (NaN if either is). exp(z − max) in two passes: s·c − max, then exp.
        target_logit = torch.where(in_tile, margin.s * margin.phi(target_cos), float("-inf"))
        row_max = torch.maximum(margin.s * nn_cos, target_logit)
        torch.add(-row_max.unsqueeze(1), buffer, alpha=margin.s, out=buffer)
        _put_column(buffer, column, in_tile, target_logit - row_max)
        row_sumexp = buffer.exp_().sum(dim=1)

        target_cos = torch.where(in_tile, target_cos, float("nan"))
        for field, value in zip(fields, (row_max, row_sumexp, target_cos, nn_cos, nn_index + start), strict=True):
            field.append(value)
    return Partials(*(torch.stack(field) for field in fields))


def backward(e_hat, weight, w_inv_norm, labels_local, margin, lse, row_grad, margin_grad):
    acc = accumulate_dtype(e_hat)
    d_e_hat = torch.zeros(e_hat.shape, dtype=acc, device=e_hat.device)
    d_weight = torch.empty_like(weight)
    row_grad = row_grad.to(acc).unsqueeze(1)
    lse = lse.to(acc)
    for start, stop in tile_ranges(weight.shape[0], e_hat.shape[0]):
        w_hat = _normalized_tile(e_hat, weight, w_inv_norm, start, stop)
        buffer = _cosine_tile(e_hat, w_hat)
        in_tile, column = _target_column(labels_local, start, stop)
        target_cos = buffer.gather(1, column).squeeze(1)

        # p_ij = exp(z_ij − lse_i) with z = s·c, and s·φ(c) at the target.
        torch.add(-lse.unsqueeze(1), buffer, alpha=margin.s, out=buffer)
        _put_column(buffer, column, in_tile, margin.s * margin.phi(target_cos) - lse)
        buffer.exp_()

        # ∂ℓ/∂z_ij = g_i (p_ij − [j = y_i]);  ∂ℓ/∂c_ij = s·∂ℓ/∂z_ij, times φ'(c_iy) at the target
        # (φ' = 1 for the straight-through margin, which is applied as if under no_grad).
        target_p = buffer.gather(1, column).squeeze(1)
        buffer.mul_(row_grad * margin.s)
        slope = margin.phi_grad(target_cos) if margin_grad == "exact" else torch.ones_like(target_cos)
        target_grad = margin.s * row_grad.squeeze(1) * (target_p - 1.0) * slope
        _put_column(buffer, column, in_tile, target_grad)
        d_cos = buffer

        # ∂ℓ/∂ŵ_j = Σ_i ∂ℓ/∂c_ij ê_i;  ∂ℓ/∂ê_i = Σ_j ∂ℓ/∂c_ij ŵ_j.
        d_cos_operand = d_cos.to(e_hat.dtype)
        d_w_hat = _product(d_cos_operand.T, e_hat)
        d_e_hat += _product(d_cos_operand, w_hat.to(e_hat.dtype), summed_across_tiles=True)

        # Normalization Jacobian: ∂ℓ/∂W_j = (∂ℓ/∂ŵ_j − ŵ_j (ŵ_j · ∂ℓ/∂ŵ_j)) / max(‖W_j‖, 1e-12).
        # In place, without (T, D) temporaries: d_w_hat becomes the tangential part, times 1/‖W_j‖.
        inv = w_inv_norm[start:stop].to(acc).unsqueeze(1)
        radial = torch.linalg.vecdot(w_hat, d_w_hat, dim=1).unsqueeze(1)
        d_w_hat.addcmul_(w_hat, radial, value=-1.0).mul_(inv)
        d_weight[start:stop] = d_w_hat
    return d_e_hat, d_weight
