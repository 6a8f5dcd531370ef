"""Session setup shared by every test.

Without a CUDA device the Triton kernels run through Triton's interpreter on CPU tensors; the
variable must be set before the first ``import triton``, hence here. Tests marked ``gpu`` are
skipped without a CUDA device.
"""

import os

import pytest
import torch

from .flags import torch_flags

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)


@pytest.fixture
def one_thread():
    """One intra-op thread: the tests' small networks gain little from a second one, and one thread
    keeps the runtime steady when other processes share the cores."""
    with torch_flags(threads=1):
        yield
