"""How the class tiles of a shard are cut into class splits: the one rule every kernel backend uses.

A kernel walks the ``C`` classes in tiles of ``block`` classes; a *split* is a run of consecutive
tiles walked by one program (or one column of programs). Asking for ``requested`` splits gives runs
of ``⌈tiles / min(requested, tiles)⌉`` tiles, and only as many splits as that takes: every split
holds at least one tile, the last one possibly fewer than the others. The per-split partial results
of the forward and the per-split ``dê`` buffers of the deterministic backward have one entry per
split, so no entry is ever empty.

    >>> plan(tile_count(130, 16), 4)      # 9 tiles asked in 4 splits: 3 tiles each, 3 splits
    ClassSplits(tiles=9, tiles_per_split=3, count=3)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassSplits:
    """``count`` splits of ``tiles_per_split`` consecutive tiles each (the last may hold fewer);
    split ``s`` walks tiles ``[s · tiles_per_split, min((s + 1) · tiles_per_split, tiles))``."""

    tiles: int
    tiles_per_split: int
    count: int

    def tile_range(self, split: int) -> range:
        """The tiles of split ``split``."""
        if not 0 <= split < self.count:
            raise ValueError(f"split must lie in [0, {self.count}), got {split}")
        first = split * self.tiles_per_split
        return range(first, min(first + self.tiles_per_split, self.tiles))


def tile_count(classes: int, block: int) -> int:
    """``⌈classes / block⌉``: the tiles of ``block`` classes that cover ``classes`` classes."""
    if classes < 1 or block < 1:
        raise ValueError(f"classes and block must be ≥ 1, got classes={classes}, block={block}")
    return -(-classes // block)


def plan(tiles: int, requested: int) -> ClassSplits:
    """``tiles`` tiles cut into at most ``requested`` non-empty splits of equal length (but the last)."""
    if tiles < 1:
        raise ValueError(f"tiles must be ≥ 1, got {tiles}")
    if requested < 1:
        raise ValueError(f"splits must be ≥ 1, got {requested}")
    per_split = -(-tiles // min(requested, tiles))
    return ClassSplits(tiles=tiles, tiles_per_split=per_split, count=-(-tiles // per_split))


def class_ranges(classes: int, block: int, requested: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of the classes of each split of ``plan(tile_count(classes, block), requested)``."""
    splits = plan(tile_count(classes, block), requested)
    ranges = []
    for split in range(splits.count):
        tiles = splits.tile_range(split)
        ranges.append((tiles.start * block, min(tiles.stop * block, classes)))
    return ranges
