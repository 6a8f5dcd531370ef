"""Unreadable items are skipped, counted and reported, never fatal.

Datasets return a :class:`Skipped` marker instead of raising; :func:`collate` drops the markers
from a batch and hands them on, and a :class:`SkipLog` in the consuming process keeps the tally
(DataLoader workers are separate processes, so the count travels with the batches).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Skipped(NamedTuple):
    name: str
    reason: str


class Batch(NamedTuple):
    """``images`` (B, 3, H, W) or None when every item was skipped; ``targets`` labels (a tensor)
    or names (a list); ``skipped`` the items dropped from this batch; ``adjusted`` ``(name, change)``
    for each image resized or converted to the network's input (from items that report it)."""

    images: torch.Tensor | None
    targets: torch.Tensor | list[str]
    skipped: list[Skipped]
    adjusted: tuple[tuple[str, str], ...] = ()


def collate(items: list) -> Batch:
    """Stack the readable ``(image, label or name[, changes])`` items of a batch; keep the skipped
    ones aside."""
    skipped = [item for item in items if isinstance(item, Skipped)]
    kept = [item for item in items if not isinstance(item, Skipped)]
    if not kept:
        return Batch(None, [], skipped)
    images = torch.stack([item[0] for item in kept])
    targets = [item[1] for item in kept]
    adjusted = tuple((item[1], change) for item in kept if len(item) > 2 for change in item[2])
    if isinstance(targets[0], str):
        return Batch(images, targets, skipped, adjusted)
    return Batch(images, torch.tensor(targets, dtype=torch.int64), skipped, adjusted)


class SkipLog:
    """The running tally of skipped items."""

    def __init__(self) -> None:
        self.items: list[Skipped] = []

    def add(self, skipped: list[Skipped]) -> None:
        self.items.extend(skipped)

    @property
    def count(self) -> int:
        return len(self.items)

    def summary(self, limit: int = 10) -> str:
        """One line per skipped item (at most ``limit``), or an empty string when none was skipped."""
        if not self.items:
            return ""
        lines = [f"skipped {self.count} unreadable item(s):"]
        lines += [f"  {item.name}: {item.reason}" for item in self.items[:limit]]
        if self.count > limit:
            lines.append(f"  … and {self.count - limit} more")
        return "\n".join(lines)
