"""Backend registry. Each backend module implements the contract of :mod:`.contract` and exposes
``available(device) -> bool``. Backends import nothing from the package above them."""
from __future__ import annotations

import importlib

import torch

_MODULES = {"chunked": "chunked", "triton": "triton_backend", "cuda": "cuda"}
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


def get(name: str):
    """The module implementing backend ``name`` (not ``auto`` nor ``reference``)."""
    return _module(name)
