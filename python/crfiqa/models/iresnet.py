"""The improved ResNet (iResNet) of ArcFace/insightface with CR-FIQA's one-unit quality head.

The module names, parameter shapes and the forward pass follow the authors' released CR-FIQA
backbones, so their ``*backbone.pth`` state dicts load with ``strict=True``::

    conv1 → bn1 → prelu → layer1 … layer4 → bn2 → flatten → dropout → fc → features (BatchNorm1d)
                                                                                │
                                                      embedding ◄───────────────┤
                                                      quality   ◄── qs (Linear(num_features, 1))

Each ``layerK`` is a sequence of :class:`IBasicBlock` (pre-activation: bn1 → conv1 → bn2 → prelu →
conv2 (strided) → bn3, plus a 1×1 conv + BatchNorm ``downsample`` on the first block). Every stage
halves the resolution, so a ``112×112`` input reaches ``fc`` as ``512×7×7``.

``widths`` and ``input_size`` are parameters so that small models for small inputs (the demo) share
the same code; the named constructors use the authors' widths and 112×112 inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

AUTHORS_WIDTHS = (64, 128, 256, 512)
STAGE_DEPTHS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}
BN_EPS = 1e-5
# Each of the four stages halves the resolution (stride 2 in its first block).
DOWNSAMPLING = 16


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """Pre-activation residual block: ``x + bn3(conv2(prelu(bn2(conv1(bn1(x))))))``."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=BN_EPS)
        self.conv1 = _conv3x3(in_channels, channels)
        self.bn2 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.prelu = nn.PReLU(channels)
        self.conv2 = _conv3x3(channels, channels, stride)
        self.bn3 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(channels, eps=BN_EPS),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """iResNet backbone; ``forward(images)`` returns ``(embedding (B, num_features), quality (B,))``.

    Args:
        depths: number of blocks in each of the four stages.
        num_features: embedding size.
        widths: channels of the four stages.
        input_size: side of the square input (a multiple of 16).
        dropout: dropout probability before ``fc`` (active in training mode only).
    """

    # the four stages, set as layer1 … layer4 in __init__ (the authors' state-dict names)
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(
        self,
        depths: Sequence[int],
        *,
        num_features: int = 512,
        widths: Sequence[int] = AUTHORS_WIDTHS,
        input_size: int = 112,
        dropout: float = 0.4,
    ) -> None:
        super().__init__()
        depths, widths = tuple(int(d) for d in depths), tuple(int(w) for w in widths)
        if len(depths) != 4 or min(depths) < 1:
            raise ValueError(f"depths must be four positive block counts, got {depths}")
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"widths must be four positive channel counts, got {widths}")
        if num_features < 1:
            raise ValueError(f"num_features must be positive, got {num_features}")
        if input_size < DOWNSAMPLING or input_size % DOWNSAMPLING:
            raise ValueError(f"input_size must be a positive multiple of {DOWNSAMPLING}, got {input_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.config: dict[str, Any] = {
            "depths": list(depths),
            "num_features": int(num_features),
            "widths": list(widths),
            "input_size": int(input_size),
            "dropout": float(dropout),
        }
        stem = widths[0]
        self.conv1 = _conv3x3(3, stem)
        self.bn1 = nn.BatchNorm2d(stem, eps=BN_EPS)
        self.prelu = nn.PReLU(stem)
        in_channels = stem
        for index, (depth, width) in enumerate(zip(depths, widths, strict=True), start=1):
            blocks = [IBasicBlock(in_channels, width, stride=2)]
            blocks += [IBasicBlock(width, width) for _ in range(depth - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
            in_channels = width
        side = input_size // DOWNSAMPLING
        self.bn2 = nn.BatchNorm2d(in_channels, eps=BN_EPS)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(in_channels * side * side, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=BN_EPS)
        self.qs = nn.Linear(num_features, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        # As the authors: convolutions N(0, 0.1), BatchNorm affine (1, 0), Linear layers PyTorch's default.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def input_size(self) -> int:
        return int(self.config["input_size"])

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.input_size
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != size or images.shape[3] != size:
            raise ValueError(f"images must have shape (B, 3, {size}, {size}), got {tuple(images.shape)}")
        x = self.prelu(self.bn1(self.conv1(images)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        # fc, features and qs run in the weights' dtype (fp32) under autocast, like the authors' fp16 mode.
        with torch.autocast(x.device.type, enabled=False):
            embedding = self.features(self.fc(x.to(self.fc.weight.dtype)))
            quality = self.qs(embedding).squeeze(1)
        return embedding, quality


def build_iresnet(config: dict) -> IResNet:
    """An :class:`IResNet` from its ``config`` dict (as stored in checkpoints)."""
    expected = {"depths", "num_features", "widths", "input_size", "dropout"}
    if not isinstance(config, dict) or set(config) != expected:
        keys = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"config must be a dict with keys {sorted(expected)}, got {keys}")
    depths = config["depths"]
    return IResNet(depths, **{k: v for k, v in config.items() if k != "depths"})


def iresnet18(num_features: int = 512, **kwargs) -> IResNet:
    return IResNet(STAGE_DEPTHS["iresnet18"], num_features=num_features, **kwargs)


def iresnet34(num_features: int = 512, **kwargs) -> IResNet:
    return IResNet(STAGE_DEPTHS["iresnet34"], num_features=num_features, **kwargs)


def iresnet50(num_features: int = 512, **kwargs) -> IResNet:
    """The backbone of the authors' CR-FIQA(S)."""
    return IResNet(STAGE_DEPTHS["iresnet50"], num_features=num_features, **kwargs)


def iresnet100(num_features: int = 512, **kwargs) -> IResNet:
    """The backbone of the authors' CR-FIQA(L)."""
    return IResNet(STAGE_DEPTHS["iresnet100"], num_features=num_features, **kwargs)


def config_from_state_dict(state_dict: dict, dropout: float = 0.4) -> dict:
    """Recover depths, widths, embedding size and input size from an iResNet state dict's shapes."""
    depths, widths = [], []
    for stage in range(1, 5):
        prefix = f"layer{stage}."
        blocks = {key[len(prefix) :].split(".", 1)[0] for key in state_dict if key.startswith(prefix)}
        conv = state_dict.get(f"{prefix}0.conv1.weight")
        if not blocks or conv is None:
            raise ValueError(f"state_dict is not an iResNet: no '{prefix}0.conv1.weight'")
        depths.append(len(blocks))
        widths.append(int(conv.shape[0]))
    fc = state_dict.get("fc.weight")
    if fc is None or fc.dim() != 2:
        raise ValueError("state_dict is not an iResNet: no 2-D 'fc.weight'")
    side = math.isqrt(int(fc.shape[1]) // widths[-1])
    if side * side * widths[-1] != fc.shape[1]:
        raise ValueError(f"fc.weight has {fc.shape[1]} inputs, not {widths[-1]}·side² for a square feature map")
    return {
        "depths": depths,
        "num_features": int(fc.shape[0]),
        "widths": widths,
        "input_size": side * DOWNSAMPLING,
        "dropout": dropout,
    }
