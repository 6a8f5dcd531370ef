"""Constructor checks shared by the margin families: a TypeError or ValueError naming the
family's argument, raised when the family is built."""

from __future__ import annotations

import math


def real(owner: str, name: str, value) -> float:
    """``value`` as a float; a TypeError unless it is a real number, a ValueError unless finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}.{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{owner}.{name} must be finite, got {value}")
    return float(value)


def positive(owner: str, name: str, value) -> float:
    value = real(owner, name, value)
    if value <= 0:
        raise ValueError(f"{owner}.{name} must be positive, got {value}")
    return value


def in_range(owner: str, name: str, value, low: float, high: float, *, shown: str, closed: bool = False) -> float:
    """``value`` in ``[low, high)`` (``[low, high]`` if ``closed``); ``shown`` is how the message
    writes the interval."""
    value = real(owner, name, value)
    if not (low <= value <= high if closed else low <= value < high):
        raise ValueError(f"{owner}.{name} must lie in {shown}, got {value}")
    return value


def flag(owner: str, name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{owner}.{name} must be a bool, got {type(value).__name__}")
    return value
