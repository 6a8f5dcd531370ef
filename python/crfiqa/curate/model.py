"""The model ``curate`` needs: a backbone (embedding + quality) and the head's class centers.

Only our training checkpoints hold the class centers (``RUN/checkpoint.pt``: ``backbone``,
``model_config``, ``head``). A run over several processes (``torchrun``) leaves one shard of the
centers per rank (``checkpoint-rank{r}.pt``); they are put back together in class order. A backbone
alone (``backbone.pth``, the authors' weights, ONNX) has no class centers and is refused.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass

import torch

from ..models import IResNet, build_iresnet
from .errors import CurateError

NO_CENTERS = (
    "{path} holds no class centers (a backbone alone?): curate needs a training checkpoint "
    "such as RUN/checkpoint.pt, which stores the head beside the backbone"
)


@dataclass
class CurateModel:
    backbone: IResNet  # eval mode
    centers: torch.Tensor  # (C, D) float32, the head's raw weight (not normalized)
    cr_formula: str  # the CR the quality head was trained to regress ("paper" or "official")
    source: str

    @property
    def num_classes(self) -> int:
        return self.centers.shape[0]

    @property
    def input_size(self) -> int:
        return self.backbone.input_size


def _read(path: str) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001 — pickle, zip and weights-only errors alike: name the file
        raise CurateError(f"cannot read model {path}: {error}") from None
    if not isinstance(payload, dict):
        raise CurateError(NO_CENTERS.format(path=path))
    return payload


def _shard_paths(path: str) -> list[str]:
    folder = os.path.dirname(os.path.abspath(path)) if os.path.isfile(path) else path
    ranks = {}
    for name in glob.glob(os.path.join(folder, "checkpoint-rank*.pt")):
        match = re.search(r"rank(\d+)\.pt$", name)
        if match is not None:  # checkpoint-rankN.pt only
            ranks[int(match.group(1))] = name
    return [ranks[rank] for rank in sorted(ranks)]


def _checkpoint_paths(path: str) -> list[str]:
    """The file(s) to read: one checkpoint, or every rank's shard of a multi-process run."""
    if os.path.isdir(path):
        single = os.path.join(path, "checkpoint.pt")
        if os.path.isfile(single):
            return [single]
        shards = _shard_paths(path)
        if not shards:
            raise CurateError(f"model folder {path} holds no checkpoint.pt nor checkpoint-rank*.pt")
        return shards
    if not os.path.isfile(path):
        raise CurateError(f"model not found: {path}")
    if re.search(r"checkpoint-rank\d+\.pt$", path):
        return _shard_paths(path)
    return [path]


def _centers(payloads: list[tuple[str, dict]]) -> torch.Tensor:
    """The head's weight; the shards of a multi-process run (their ``_extra_state`` gives each one's
    class range) put back together in class order, every class accounted for."""
    blocks, total = [], None
    for path, payload in payloads:
        head = payload.get("head")
        weight = head.get("weight") if isinstance(head, dict) else None
        if not isinstance(head, dict) or not isinstance(weight, torch.Tensor) or weight.ndim != 2:
            raise CurateError(NO_CENTERS.format(path=path))
        extra = head.get("_extra_state")
        if isinstance(extra, dict) and "class_start" in extra:
            blocks.append((int(extra["class_start"]), path, weight))
            total = int(extra.get("num_classes", 0)) or total
        elif len(payloads) > 1:
            raise CurateError(f"{path}: a shard without its class range; cannot put the centers together")
        else:
            blocks.append((0, path, weight))
    blocks.sort(key=lambda block: block[0])
    expected = 0
    for start, path, weight in blocks:
        if start != expected:
            raise CurateError(f"{path}: its classes start at {start}, expected {expected} (a shard is missing?)")
        expected += weight.shape[0]
    if total is not None and expected != total:
        raise CurateError(
            f"{blocks[-1][1]}: the shards hold {expected} of the head's {total} classes (a shard is missing?)"
        )
    return torch.cat([weight.float() for _, _, weight in blocks]).contiguous()


def load_curate_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> CurateModel:
    """Backbone and class centers from a training checkpoint (file, run folder or rank shards)."""
    path = os.fspath(path)
    paths = _checkpoint_paths(path)
    payloads = [(name, _read(name)) for name in paths]
    first_path, first = payloads[0]
    if "head" not in first:
        raise CurateError(NO_CENTERS.format(path=first_path))
    if "backbone" not in first or "model_config" not in first:
        raise CurateError(f"{first_path} is not a training checkpoint of ours (no backbone / model_config)")
    centers = _centers(payloads)
    backbone = build_iresnet(first["model_config"])
    try:
        backbone.load_state_dict(first["backbone"], strict=True)
    except RuntimeError as error:
        raise CurateError(f"{first_path}: the backbone does not match its model_config ({error})") from None
    if centers.shape[1] != backbone.config["num_features"]:
        raise CurateError(
            f"{first_path}: class centers of size {centers.shape[1]} but embeddings of size "
            f"{backbone.config['num_features']}"
        )
    if centers.shape[0] < 2:
        raise CurateError(f"{first_path}: the head has {centers.shape[0]} class; curate needs at least 2")
    cr = (first.get("config") or {}).get("cr", "paper")
    return CurateModel(backbone.to(device).eval(), centers.to(device), cr, path)
