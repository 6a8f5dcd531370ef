"""Backend registry. Each backend module implements the contract of :mod:`.contract` and exposes
``available(device) -> bool``. Backends import nothing from the package above them.

A backend that does not run some dtype itself says so in a module attribute
``DELEGATES = {dtype: other_backend_name}`` (the ``cuda`` kernels hand float64, the oracle's
precision that the tensor cores lack, to ``chunked``). :func:`serving` tells which backend actually
runs a backend's kernels for a dtype, and ``get(name, dtype)`` returns that backend's module.
"""

from __future__ import annotations

import importlib

import torch

_MODULES = {"chunked": "chunked", "triton": "triton", "cuda": "cuda"}
# Fastest first, per device type; ``auto`` takes the first one available.
AUTO_PREFERENCE = {"cuda": ("triton", "chunked")}
NAMES = ("auto", "reference", *_MODULES)


def _module(name: str):
    return importlib.import_module(f".{_MODULES[name]}", __name__)


def is_available(name: str, device: torch.device) -> bool:
    try:
        return bool(_module(name).available(device))
    except ImportError:
        return False


def resolve(name: str, device: torch.device) -> str:
    """The concrete backend ``name`` stands for on ``device``; raises if it cannot run there."""
    if name not in NAMES:
        raise ValueError(f"backend must be one of {NAMES}, got {name!r}")
    if name == "auto":
        for candidate in AUTO_PREFERENCE.get(device.type, ("chunked",)):
            if is_available(candidate, device):
                return candidate
        return "chunked"
    if name != "reference" and not is_available(name, device):
        raise ValueError(f"backend {name!r} is not available on device {device}")
    return name


def serving(name: str, dtype: torch.dtype) -> str:
    """The backend whose kernels run for backend ``name`` on operands of ``dtype``: ``name`` itself,
    or the one its ``DELEGATES`` names for that dtype (e.g. ``serving("cuda", torch.float64)`` is
    ``"chunked"``). Not for ``auto`` nor ``reference``."""
    if name not in _MODULES:
        raise ValueError(f"backend must be one of {tuple(_MODULES)}, got {name!r}")
    delegate = getattr(_module(name), "DELEGATES", {}).get(dtype)
    return name if delegate is None else serving(delegate, dtype)


def get(name: str, dtype: torch.dtype | None = None):
    """The module implementing backend ``name`` (not ``auto`` nor ``reference``); with ``dtype``, the
    module of the backend that serves that dtype (:func:`serving`)."""
    return _module(name if dtype is None else serving(name, dtype))
