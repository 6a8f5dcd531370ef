"""Load a backbone for inference from our training checkpoints or the authors' ``*backbone.pth``."""

from __future__ import annotations

import os

import torch

from .iresnet import IResNet, build_iresnet, config_from_state_dict


def backbone_state_from_file(path: str | os.PathLike) -> tuple[dict, dict | None]:
    """``(state_dict, config or None)`` from a checkpoint file, read with ``weights_only=True``.

    Accepted: our training checkpoints (a dict with ``backbone`` and ``model_config``), a bare
    backbone state dict (ours or the authors' released ``*backbone.pth``), with or without the
    ``module.`` prefix that ``DistributedDataParallel`` adds.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 (pickle, zip and weights-only errors alike: say which file failed)
        # torch's own message may advise weights_only=False, which would run code from the file: not repeated.
        what = (
            "holds Python objects besides tensors, which are not loaded (only weights are)"
            if "Unsupported global" in str(error)
            else "is not a PyTorch checkpoint (or is damaged)"
        )
        raise ValueError(f"cannot read checkpoint {path}: it {what}") from None
    if not isinstance(payload, dict):
        raise ValueError(f"checkpoint {path} holds a {type(payload).__name__}, not a state dict")
    config = None
    if "backbone" in payload and "model_config" in payload:
        payload, config = payload["backbone"], payload["model_config"]
    if payload and all(key.startswith("module.") for key in payload):
        payload = {key[len("module.") :]: value for key, value in payload.items()}
    return payload, config


def load_backbone(path: str | os.PathLike, device: str | torch.device = "cpu") -> IResNet:
    """An :class:`IResNet` in eval mode with the weights of ``path`` (architecture inferred)."""
    state_dict, config = backbone_state_from_file(path)
    try:
        model = build_iresnet(config if config is not None else config_from_state_dict(state_dict))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path} does not hold iResNet backbone weights ({error})") from None
    mismatch = _mismatch(model.state_dict(), state_dict)
    if mismatch:
        raise ValueError(f"{path} does not fit the iResNet it describes: {mismatch}")
    model.load_state_dict(state_dict, strict=True)
    return model.to(device).eval()


def _mismatch(expected: dict, found: dict) -> str:
    """What keeps ``found`` from loading into a model whose state dict is ``expected`` ('' if nothing)."""
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    shapes = [
        f"{key} {tuple(found[key].shape)} instead of {tuple(value.shape)}"
        for key, value in expected.items()
        if key in found and getattr(found[key], "shape", None) != value.shape
    ]
    parts = [
        f"{len(items)} {label} (e.g. {items[0]})"
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("tensors of another shape", shapes),
        )
        if items
    ]
    return "; ".join(parts)
