"""Training: the CR-FIQA recipe, presets, atomic checkpoints, exact resume and clean interrupts."""

from .checkpoint import load_checkpoint, save_atomic
from .config import PRESETS, TrainConfig, preset
from .interrupt import TrainingInterrupted
from .loop import Trainer, TrainResult, train

__all__ = [
    "PRESETS",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingInterrupted",
    "load_checkpoint",
    "preset",
    "save_atomic",
    "train",
]
