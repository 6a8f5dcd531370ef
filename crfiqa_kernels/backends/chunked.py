"""The ``chunked`` backend: the kernel contract in PyTorch, tiled over classes.

Each tile of ``T`` classes costs one (B, T) buffer, reused in place for the cosines, the logits and
the probabilities, so the transient memory is bounded by ``TILE_ELEMENTS`` whatever ``C`` is. It is
the CPU path and a fallback on any device; it is deterministic.
"""

from __future__ import annotations

import torch

from .contract import LogitParams, Partials, accumulate_dtype, check_logits

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


def _cosine_tile(e_hat, w_hat, logits: LogitParams):
    """clamp(ê · ŵ_jᵀ, -1 + ε_c, 1 - ε_c) for the tile's classes, ŵ rounded to ê's dtype."""
    low, high = logits.bounds()
    return _product(e_hat, w_hat.to(e_hat.dtype).T).clamp_(low, high)


def _target_column(labels_local, start, stop):
    """(in_tile, column) of each row's label relative to the tile; column is clamped to be valid."""
    in_tile = (labels_local >= start) & (labels_local < stop)
    column = (labels_local - start).clamp(0, stop - start - 1).unsqueeze(1)
    return in_tile, column


def _put_column(buffer, column, in_tile, value):
    """buffer[i, column_i] = value_i where in_tile_i; other rows keep their entry."""
    kept = buffer.gather(1, column).squeeze(1)
    buffer.scatter_(1, column, torch.where(in_tile, value, kept).unsqueeze(1))


def _hard(buffer, logits: LogitParams):
    """The entries the negative transform changes: ``c_ij > threshold_i`` (check_logits: present)."""
    assert logits.threshold is not None
    return buffer > logits.threshold.to(buffer.dtype).unsqueeze(1)


def forward_partials(e_hat, weight, w_inv_norm, labels_local, logits: LogitParams) -> Partials:
    check_logits(logits, e_hat.shape[0], e_hat.device)
    s = logits.s
    fields: list[list[torch.Tensor]] = [[] for _ in Partials._fields]
    for start, stop in tile_ranges(weight.shape[0], e_hat.shape[0]):
        buffer = _cosine_tile(e_hat, _normalized_tile(e_hat, weight, w_inv_norm, start, stop), logits)
        in_tile, column = _target_column(labels_local, start, stop)
        target_cos = buffer.gather(1, column).squeeze(1)

        # Nearest negative: the target column is excluded with −inf, which then stays out of the
        # logits too (−inf is above no threshold, and exp(−inf) = 0).
        _put_column(buffer, column, in_tile, torch.full_like(target_cos, float("-inf")))
        nn_cos, nn_index = buffer.max(dim=1)

        # Non-target logits z = s·ν(c). Without a transform the row's largest is s·NNCCS (s > 0) and
        # exp(z − max) takes two passes: s·c − max, then exp.
        if logits.negative == "none":
            row_max = s * nn_cos
        else:
            hard = _hard(buffer, logits)
            if logits.negative == "filter":
                buffer.masked_fill_(hard, 0.0)
            else:
                buffer.copy_(torch.where(hard, buffer * (logits.t + buffer), buffer))
            row_max = s * buffer.amax(dim=1)
        # A tile holding only the target column has no logits: max −inf, sum 0.
        shift = torch.where(torch.isneginf(row_max), 0.0, row_max)
        torch.add(-shift.unsqueeze(1), buffer, alpha=s, out=buffer)
        row_sumexp = buffer.exp_().sum(dim=1)

        target_cos = torch.where(in_tile, target_cos, float("nan"))
        for field, value in zip(fields, (row_max, row_sumexp, target_cos, nn_cos, nn_index + start), strict=True):
            field.append(value)
    return Partials(*(torch.stack(field) for field in fields))


def backward(e_hat, weight, w_inv_norm, labels_local, logits: LogitParams, lse, row_grad):
    check_logits(logits, e_hat.shape[0], e_hat.device)
    s = logits.s
    acc = accumulate_dtype(e_hat)
    d_e_hat = torch.zeros(e_hat.shape, dtype=acc, device=e_hat.device)
    d_weight = torch.empty_like(weight)
    row_grad = row_grad.to(acc).unsqueeze(1)
    lse = lse.to(acc)
    for start, stop in tile_ranges(weight.shape[0], e_hat.shape[0]):
        w_hat = _normalized_tile(e_hat, weight, w_inv_norm, start, stop)
        buffer = _cosine_tile(e_hat, w_hat, logits)
        in_tile, column = _target_column(labels_local, start, stop)

        # ∂L/∂c_ij = g_i · exp(z_ij − lse_i) · s·ν'(c_ij) for j ≠ y_i, with z = s·ν(c):
        #   ν = c:                       ν' = 1
        #   filter (c > thr: ν = 0):     ν' = 0 there (no gradient)
        #   curricular (c > thr: c(t+c)): ν' = t + 2c there
        # and 0 at the target column (its gradient is the op's, through τ_i).
        if logits.negative == "none":
            torch.add(-lse.unsqueeze(1), buffer, alpha=s, out=buffer)
            buffer.exp_().mul_(row_grad * s)
        elif logits.negative == "filter":
            hard = _hard(buffer, logits)
            torch.add(-lse.unsqueeze(1), buffer, alpha=s, out=buffer)
            buffer.exp_().mul_(row_grad * s).masked_fill_(hard, 0.0)
        else:
            hard = _hard(buffer, logits)
            nu = torch.where(hard, buffer * (logits.t + buffer), buffer)
            slope = torch.where(hard, logits.t + 2.0 * buffer, 1.0)
            torch.add(-lse.unsqueeze(1), nu, alpha=s, out=buffer)
            buffer.exp_().mul_(slope).mul_(row_grad * s)
        _put_column(buffer, column, in_tile, torch.zeros_like(lse))
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
