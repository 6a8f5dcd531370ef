"""Fixtures shared by the wrapper's tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """One intra-op thread: the tests' small networks gain little from a second one, and one thread
    keeps the runtime steady when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
