"""The one rule for cutting class tiles into splits (crfiqa_kernels.backends.class_splits)."""

import pytest

from crfiqa_kernels.backends import class_splits


@pytest.mark.parametrize("tiles", [1, 2, 7, 9, 166, 1340, 3_125_000])
@pytest.mark.parametrize("requested", [1, 2, 3, 4, 20, 264, 10**9])
def test_splits_cover_every_tile_once_and_none_is_empty(tiles, requested):
    """Full splits of tiles_per_split tiles, one shorter last split, back to back from tile 0 to the
    last; checked at every split of a short plan, at both ends and the middle of a long one."""
    splits = class_splits.plan(tiles, requested)
    assert 1 <= splits.count <= min(tiles, requested)
    assert splits.tiles_per_split * (splits.count - 1) < tiles <= splits.tiles_per_split * splits.count
    checked = sorted(
        {*range(min(splits.count, 64)), splits.count // 2, *range(max(splits.count - 64, 0), splits.count)}
    )
    for split in checked:
        tile_range = splits.tile_range(split)
        assert tile_range.start == split * splits.tiles_per_split
        assert tile_range.stop == min(tile_range.start + splits.tiles_per_split, tiles) > tile_range.start


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
