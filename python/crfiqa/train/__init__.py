"""Training: the CR-FIQA recipe, presets, atomic checkpoints and exact resume."""
from .checkpoint import load_checkpoint, save_atomic
from .config import PRESETS, TrainConfig, preset
from .loop import TrainResult, Trainer, train

__all__ = ["PRESETS", "TrainConfig", "TrainResult", "Trainer", "load_checkpoint", "preset", "save_atomic", "train"]
