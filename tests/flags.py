"""Torch's process-wide flags, set for a block of a test and restored after it.

Every flag below is saved on entry and put back on exit, whether the block set it through the
arguments or changed it itself (a test that switches deterministic algorithms off half-way).
Plain reads and writes of torch's own accessors: no test patches torch's module proxies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_flags(
    *, tf32: bool | None = None, deterministic: bool | None = None, threads: int | None = None
) -> Iterator[None]:
    """``tf32``: ``torch.backends.cuda.matmul.allow_tf32``; ``deterministic``:
    ``torch.use_deterministic_algorithms``; ``threads``: ``torch.set_num_threads``."""
    saved_tf32 = torch.backends.cuda.matmul.allow_tf32
    saved_deterministic = torch.are_deterministic_algorithms_enabled()
    saved_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    saved_threads = torch.get_num_threads()
    try:
        if tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = tf32
        if deterministic is not None:
            torch.use_deterministic_algorithms(deterministic)
        if threads is not None:
            torch.set_num_threads(threads)
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved_tf32
        torch.use_deterministic_algorithms(saved_deterministic, warn_only=saved_warn_only)
        if torch.get_num_threads() != saved_threads:
            torch.set_num_threads(saved_threads)
