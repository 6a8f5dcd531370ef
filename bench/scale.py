"""The largest number of classes whose training step fits on the GPU.

A training step is B = 512 embeddings (requiring grad, as from a backbone) against float32 master
class centers (C, 512), forward + backward, then an SGD-with-momentum update; two steps run, so the
momentum buffer exists. The largest fitting C is found by bisection between one that fits and an
upper bound that cannot (weight, gradient and momentum alone would exceed the device's memory).
"""

from __future__ import annotations

import torch

from .impls import Implementation, Setting
from .problems import DtypeSetting, Problem
from .records import make_record
from .runner import RunConfig, failure_status, is_out_of_memory, release_memory
from .shapes import Shape

BATCH = 512
DIM = 512
STEPS = 2


def largest_fitting(fits, low: int, high: int, resolution: int) -> int:
    """The largest ``n`` in ``[low, high)`` with ``fits(n)``, to within ``resolution``, assuming
    ``fits`` is monotone (true up to some n, false after); ``low - 1`` when ``fits(low)`` is false.
    """
    if resolution < 1:
        raise ValueError(f"resolution must be at least 1, got {resolution}")
    if not fits(low):
        return low - 1
    while high - low > resolution:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


def _train(impl: Implementation, classes: int, dtype: DtypeSetting, config: RunConfig) -> None:
    device = config.device
    generator = torch.Generator(device=device).manual_seed(config.seed)
    weight = torch.nn.Parameter(torch.randn(classes, DIM, device=device, generator=generator).mul_(0.01))
    optimizer = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
    embeddings = torch.randn(BATCH, DIM, device=device, generator=generator).to(dtype.embedding_dtype)
    embeddings.requires_grad_(True)
    labels = torch.randint(0, classes, (BATCH,), device=device, generator=generator)
    setting = Setting(
        device, dtype, "fwd_bwd", config.margin, [Problem(embeddings, weight, labels)], config.compile_backend
    )
    loss_fn = impl.build_loss(setting)
    for _ in range(STEPS):
        with dtype.autocast(device):
            loss = loss_fn(embeddings, weight, labels)[0]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # an asynchronous failure surfaces here


def training_step_fits(impl: Implementation, classes: int, dtype: DtypeSetting, config: RunConfig) -> bool:
    """Whether two training steps at ``classes`` run without running out of device memory."""
    try:
        _train(impl, classes, dtype, config)  # its tensors are freed when it returns or raises
        return True
    except Exception as error:  # noqa: BLE001 — only running out of memory means "does not fit"
        if is_out_of_memory(error):
            return False
        raise
    finally:
        release_memory(config.device)


def largest_classes(impl: Implementation, dtype: DtypeSetting, config: RunConfig, *, resolution_fraction=0.005) -> int:
    """Bisection on C for ``impl`` (a loss implementation) on ``config.device`` (CUDA)."""
    if config.device.type != "cuda":
        raise ValueError("the scale search measures GPU memory: it needs --device cuda")
    if impl.build_loss is None:
        raise ValueError(f"{impl.name} is not a loss implementation; the scale search trains a head")
    free, _ = torch.cuda.mem_get_info(config.device)
    # Weight, gradient and momentum: 3 float32 copies of (C, D).
    high = free // (3 * DIM * 4) + 1
    resolution = max(1_000, int(high * resolution_fraction))
    return largest_fitting(lambda c: training_step_fits(impl, c, dtype, config), 1_000, high, resolution)


def run_scale(impls: list[Implementation], dtypes: list[DtypeSetting], config: RunConfig, env: dict) -> list[dict]:
    """One ``scale`` record per (implementation, dtype): ``max_classes``, or why it could not run."""
    records = []
    for impl in impls:
        for dtype in dtypes:
            try:
                found = largest_classes(impl, dtype, config)
                status, message = "ok", ""
            except Exception as error:  # noqa: BLE001 — recorded, not dropped
                found = None
                status, message = failure_status(error)
            shape = Shape("train_step", BATCH, found or 0, DIM, "largest C whose training step fits")
            records.append(
                make_record(
                    env,
                    impl=impl.name,
                    shape=shape,
                    dtype=dtype.name,
                    mode="scale",
                    status=status,
                    message=message,
                    max_classes=found,
                )
            )
    return records
