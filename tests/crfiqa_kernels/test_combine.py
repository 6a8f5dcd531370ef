"""The combine step: partials of uneven shards of W combine into the statistics of the whole."""

import torch

from crfiqa_kernels.backends import chunked
from crfiqa_kernels.backends.contract import LogitParams, Partials
from crfiqa_kernels.combine import SplitReducer, combine_partials


def _inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    e_hat = torch.nn.functional.normalize(torch.randn(11, 24, generator=gen), dim=1)
    weight = torch.randn(100, 24, generator=gen)
    w_inv_norm = 1.0 / weight.norm(dim=1)
    labels = torch.randint(0, 100, (11,), generator=gen)
    labels[[2, 7]] = -1
    labels[0], labels[1] = 0, 99  # first and last class
    return e_hat, weight, w_inv_norm, labels


def test_three_uneven_shards_equal_the_whole():
    e_hat, weight, w_inv_norm, labels = _inputs()
    margin = LogitParams(s=64.0)
    whole = combine_partials(chunked.forward_partials(e_hat, weight, w_inv_norm, labels, margin))

    bounds = [(0, 17), (17, 80), (80, 100)]
    shards = []
    for start, stop in bounds:
        local = torch.where((labels >= start) & (labels < stop), labels - start, -1)
        part = chunked.forward_partials(e_hat, weight[start:stop], w_inv_norm[start:stop], local, margin)
        # Make the shard's indices global before stacking its splits with the others'.
        shards.append(part._replace(nn_index=part.nn_index + start))
    stacked = Partials(*(torch.cat(fields) for fields in zip(*shards, strict=True)))
    combined = combine_partials(stacked)

    torch.testing.assert_close(combined.lse, whole.lse)
    torch.testing.assert_close(combined.target_cos, whole.target_cos, equal_nan=True)
    torch.testing.assert_close(combined.nn_cos, whole.nn_cos)
    assert torch.equal(combined.nn_index, whole.nn_index)
    assert torch.isnan(combined.target_cos[[2, 7]]).all()


def test_class_offset_makes_indices_global():
    e_hat, weight, w_inv_norm, labels = _inputs(1)
    local = torch.full_like(labels, -1)
    part = chunked.forward_partials(e_hat, weight[40:], w_inv_norm[40:], local, LogitParams(s=64.0))
    stats = combine_partials(part, class_offset=40)
    expected = (e_hat @ (weight[40:] * w_inv_norm[40:, None]).T).argmax(dim=1) + 40
    assert torch.equal(stats.nn_index, expected)


def test_ties_pick_the_lowest_index_across_shards():
    row_max = torch.zeros(2, 1)
    partials = Partials(
        row_max=row_max,
        row_sumexp=torch.ones(2, 1),
        target_cos=torch.full((2, 1), float("nan")),
        nn_cos=torch.full((2, 1), 0.5),
        nn_index=torch.tensor([[9], [4]]),
    )
    stats = combine_partials(partials)
    assert stats.nn_index.item() == 4
    torch.testing.assert_close(stats.lse, torch.log(torch.tensor([2.0])))


class _NanDroppingReducer(SplitReducer):
    """Reduces splits as the MAX of NCCL and gloo may: a NaN loses to any number."""

    def max(self, t):
        return torch.where(torch.isnan(t), float("-inf"), t).amax(dim=0)


def test_nan_center_on_another_shard_is_not_dropped_from_nnccs():
    e_hat, weight, w_inv_norm, labels = _inputs()
    weight = weight.clone()
    weight[90, 3] = float("nan")  # a negative for every row but none labelled 90, in the last shard
    w_inv_norm = 1.0 / weight.norm(dim=1)
    margin = LogitParams(s=64.0)
    shards = []
    for start, stop in [(0, 17), (17, 80), (80, 100)]:
        local = torch.where((labels >= start) & (labels < stop), labels - start, -1)
        part = chunked.forward_partials(e_hat, weight[start:stop], w_inv_norm[start:stop], local, margin)
        shards.append(part._replace(nn_index=part.nn_index + start))
    stacked = Partials(*(torch.cat(fields) for fields in zip(*shards, strict=True)))
    combined = combine_partials(stacked, reducer=_NanDroppingReducer())
    assert torch.isnan(combined.lse).all() and torch.isnan(combined.nn_cos).all()
    labelled = labels >= 0
    assert torch.isfinite(combined.target_cos[labelled]).all()  # the own-center cosine stays defined
