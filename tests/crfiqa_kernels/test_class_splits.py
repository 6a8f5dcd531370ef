"""The one rule for cutting class tiles into splits (crfiqa_kernels.backends.class_splits)."""

import pytest

from crfiqa_kernels.backends import class_splits


@pytest.mark.parametrize("tiles", [1, 2, 7, 9, 166, 1340, 3_125_000])
@pytest.mark.parametrize("requested", [1, 2, 3, 4, 20, 264, 10**9])
def test_splits_cover_every_tile_once_and_none_is_empty(tiles, requested):
    splits = class_splits.plan(tiles, requested)
    assert 1 <= splits.count <= min(tiles, requested)
    ranges = [splits.tile_range(split) for split in range(splits.count)]
    assert all(len(r) >= 1 for r in ranges)
    assert all(len(r) == splits.tiles_per_split for r in ranges[:-1])
    assert [tile for r in ranges for tile in r] == list(range(tiles))


def test_class_ranges_follow_the_tiles():
    assert class_splits.class_ranges(130, 16, 4) == [(0, 48), (48, 96), (96, 130)]
    assert class_splits.class_ranges(5, 16, 3) == [(0, 5)]
    assert class_splits.tile_count(130, 16) == 9


@pytest.mark.parametrize(
    "call",
    [
        lambda: class_splits.plan(0, 1),
        lambda: class_splits.plan(5, 0),
        lambda: class_splits.tile_count(0, 16),
        lambda: class_splits.plan(3, 1).tile_range(1),
    ],
)
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()
