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
    except Exception as error:  # pickle, zip and weights-only errors alike: say which file failed
        raise ValueError(f"cannot read checkpoint {path}: {error}") from error
    if not isinstance(payload, dict):
        raise ValueError(f"checkpoint {path} holds a {type(payload).__name__}, not a state dict")
    config = None
    if "backbone" in payload and "model_config" in payload:
        payload, config = payload["backbone"], payload["model_config"]
    if payload and all(key.startswith("module.") for key in payload):
        payload = {key[len("module."):]: value for key, value in payload.items()}
    return payload, config


def load_backbone(path: str | os.PathLike, device: str | torch.device = "cpu") -> IResNet:
    """An :class:`IResNet` in eval mode with the weights of ``path`` (architecture inferred)."""
    state_dict, config = backbone_state_from_file(path)
    model = build_iresnet(config if config is not None else config_from_state_dict(state_dict))
    model.load_state_dict(state_dict, strict=True)
    return model.to(device).eval()
