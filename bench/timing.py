"""Median time of steps measured round-robin over rotating problems.

Within a (shape, dtype, mode) group every implementation is timed in turn, repeat after repeat
(A B C A B C ...), so that a change in the machine's load during the run weighs on all of them
alike and the ratios between them stay fair. Repeat ``r`` of every implementation uses problem
``r mod k``. The outputs of a step are dropped after it, as a training loop would drop them.

CUDA: a pair of CUDA events around each step (no host synchronization in between; one at the
end), so a sample is the device time of that step. CPU: ``time.perf_counter`` around each step.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    median_ms: float
    q25_ms: float
    q75_ms: float
    repeats: int


def summarize(samples_ms: list[float]) -> Timing:
    if len(samples_ms) == 1:
        return Timing(samples_ms[0], samples_ms[0], samples_ms[0], 1)
    q25, q50, q75 = statistics.quantiles(samples_ms, n=4, method="inclusive")
    return Timing(q50, q25, q75, len(samples_ms))


class WallClock:
    def around(self, step, problem):
        start = time.perf_counter()
        step(problem)
        return (time.perf_counter() - start) * 1e3

    def milliseconds(self, samples) -> list[float]:
        return samples


class CudaEvents:
    def __init__(self, device: torch.device):
        self.device = device

    def around(self, step, problem):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step(problem)
        end.record()
        return start, end

    def milliseconds(self, samples) -> list[float]:
        torch.cuda.synchronize(self.device)
        return [start.elapsed_time(end) for start, end in samples]


def clock_for(device: torch.device):
    return CudaEvents(device) if device.type == "cuda" else WallClock()


def round_robin(steps: dict, problems, device: torch.device, repeats: int):
    """``(timings, failures)``: a :class:`Timing` per step name, or the exception that stopped it."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    clock = clock_for(device)
    running = dict(steps)
    samples: dict[str, list] = {name: [] for name in steps}
    failures: dict[str, Exception] = {}
    for repeat in range(repeats):
        problem = problems[repeat % len(problems)]
        for name, step in list(running.items()):
            try:
                samples[name].append(clock.around(step, problem))
            except Exception as error:  # noqa: BLE001 — the caller records it
                failures[name] = error
                del running[name]
    timings = {name: summarize(clock.milliseconds(samples[name])) for name in running}
    return timings, failures
