"""Backbones: the iResNet family with CR-FIQA's quality head, and loading released weights."""

from .iresnet import (
    STAGE_DEPTHS,
    IResNet,
    build_iresnet,
    config_from_state_dict,
    iresnet18,
    iresnet34,
    iresnet50,
    iresnet100,
)
from .loading import backbone_state_from_file, load_backbone

BACKBONES = {"iresnet18": iresnet18, "iresnet34": iresnet34, "iresnet50": iresnet50, "iresnet100": iresnet100}

__all__ = [
    "BACKBONES",
    "STAGE_DEPTHS",
    "IResNet",
    "backbone_state_from_file",
    "build_iresnet",
    "config_from_state_dict",
    "iresnet18",
    "iresnet34",
    "iresnet50",
    "iresnet100",
    "load_backbone",
]
