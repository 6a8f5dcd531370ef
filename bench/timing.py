"""Median time of a step over rotating problems.

CUDA: one pair of CUDA events around each repeat (no host synchronization between repeats, one at
the end), so a sample is the device time of that step. CPU: ``time.perf_counter`` around each
repeat. Warm-up repeats come first (they also trigger compilation and autotuning); the step's
outputs are dropped after each repeat, as a training loop would drop them.
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


def _summarize(samples_ms: list[float]) -> Timing:
    if len(samples_ms) == 1:
        return Timing(samples_ms[0], samples_ms[0], samples_ms[0], 1)
    q25, q50, q75 = statistics.quantiles(samples_ms, n=4, method="inclusive")
    return Timing(q50, q25, q75, len(samples_ms))


def measure(step, problems, device: torch.device, *, warmup: int, repeats: int) -> Timing:
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for index in range(warmup):
        step(problems[index % len(problems)])
    if device.type == "cuda":
        return _summarize(_cuda_samples(step, problems, device, repeats))
    return _summarize(_wall_samples(step, problems, repeats))


def _wall_samples(step, problems, repeats: int) -> list[float]:
    samples = []
    for index in range(repeats):
        problem = problems[index % len(problems)]
        start = time.perf_counter()
        step(problem)
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def _cuda_samples(step, problems, device: torch.device, repeats: int) -> list[float]:
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    torch.cuda.synchronize(device)
    for index, (start, end) in enumerate(events):
        problem = problems[index % len(problems)]
        start.record()
        step(problem)
        end.record()
    torch.cuda.synchronize(device)
    return [start.elapsed_time(end) for start, end in events]
