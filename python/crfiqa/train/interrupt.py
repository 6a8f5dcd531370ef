"""Ctrl-C and SIGTERM stop a run at the next step boundary, after an atomic checkpoint.

While :class:`StopRequests` is active, SIGINT and SIGTERM only record the request; the loop checks
it after each step, saves and raises :class:`TrainingInterrupted`. A second Ctrl-C stops at once
(``KeyboardInterrupt``); checkpoints are written atomically, so every one on disk stays loadable.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving a checkpoint at step ``step``."""

    def __init__(self, signum: int, step: int, epoch: int, checkpoint: str) -> None:
        self.signal_name = signal.Signals(signum).name
        self.exit_status = 128 + int(signum)  # 130 for SIGINT, 143 for SIGTERM, as a shell reports them
        self.step, self.epoch, self.checkpoint = step, epoch, checkpoint
        super().__init__(
            f"interrupted ({self.signal_name}) at step {step} (epoch {epoch}); checkpoint "
            f"{checkpoint}; resume with --resume"
        )


class StopRequests:
    """A context in which SIGINT/SIGTERM set :attr:`signum` instead of stopping the process (main
    thread only; elsewhere signals keep their handlers and :attr:`signum` stays None)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _request(self, signum: int, frame) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signum = signum

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._request) for signum in SIGNALS}
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
