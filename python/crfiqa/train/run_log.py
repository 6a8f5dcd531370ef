"""Where a run reports: a log file in the output folder and, optionally, TensorBoard."""

from __future__ import annotations

import logging
import os


def _tensorboard_writer(folder: str):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError(
            "TensorBoard logging needs the tensorboard package: pip install tensorboard "
            "(or train without --tensorboard)"
        ) from error
    return SummaryWriter(log_dir=folder)


class RunLog:
    """``output/train.log`` (main process only) and ``output/tensorboard/`` when asked for."""

    def __init__(self, output_dir: str, *, enabled: bool = True, tensorboard: bool = False) -> None:
        self.logger = logging.getLogger(f"crfiqa.train.{os.path.abspath(output_dir)}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        self._handler = None
        self._writer = None
        if not enabled:
            return
        os.makedirs(output_dir, exist_ok=True)
        self._handler = logging.FileHandler(os.path.join(output_dir, "train.log"), encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.logger.addHandler(self._handler)
        if tensorboard:
            self._writer = _tensorboard_writer(os.path.join(output_dir, "tensorboard"))

    def info(self, message: str) -> None:
        self.logger.info(message)

    def warning(self, message: str) -> None:
        self.logger.warning(message)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """One log line, and the values on TensorBoard under ``train/``."""
        self.logger.info(f"step {step} " + " ".join(f"{name}={value:.5g}" for name, value in values.items()))
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(f"train/{name}", value, step)

    def close(self) -> None:
        if self._handler is not None:
            self.logger.removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
