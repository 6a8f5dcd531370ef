"""Peak extra memory of one step: the most memory it holds at once beyond its inputs, minus what it
returns to be kept (the gradients of E and W, the loss, the per-row statistics).

CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the memory
allocated before the step (the inputs).

CPU: PyTorch's CPU allocator has no peak counter, so the step runs once under
``torch.profiler.profile(profile_memory=True)``, which records every allocation and free made
through PyTorch's allocator with its size and time; the peak of their running sum is the peak
extra memory. It counts every tensor (including those autograd saves for the backward) and not
what libraries allocate on their own (oneDNN/MKL scratch space, faiss), nor allocator caching.

Subtracting the returned tensors is the DESIGN §6 convention ("minus inputs and gradients"): a
step that needs nothing beyond its gradients scores about 0. When a step's peak comes before its
gradients exist, this understates its extra memory by at most their size.
"""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile


def tensor_bytes(outputs) -> int:
    """Bytes of the tensors in ``outputs`` (nested tuples/lists; anything else counts 0)."""
    if isinstance(outputs, torch.Tensor):
        return outputs.untyped_storage().nbytes()
    if isinstance(outputs, (tuple, list)):
        return sum(tensor_bytes(item) for item in outputs)
    return 0


def peak_extra_bytes(step, problem, device: torch.device) -> tuple[int, object]:
    """``(peak extra bytes, the step's outputs)`` of one call of ``step(problem)``.

    On CUDA, memory still held by unreachable objects would count in the baseline: the caller
    collects them first (:func:`bench.runner.release_memory`).
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        baseline = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        outputs = step(problem)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - baseline
    else:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
            outputs = step(problem)
        peak = _peak_of_running_sum(profiler)
    return peak - tensor_bytes(outputs), outputs


def _peak_of_running_sum(profiler) -> int:
    events = [
        event
        for event in profiler.profiler.kineto_results.events()
        if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU
    ]
    running = peak = 0
    for event in sorted(events, key=lambda event: event.start_ns()):
        running += event.nbytes()
        peak = max(peak, running)
    return peak
