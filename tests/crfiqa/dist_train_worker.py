"""A process of the 2-rank gloo training run in test_train_distributed.py."""

import os

import torch
import torch.distributed as dist

from crfiqa.train import preset, train

from .synthetic import PrototypeDataset


def run(rank: int, world: int, workdir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", init_method=f"file://{workdir}/init", rank=rank, world_size=world)
    config = preset("tiny", epochs=1, batch_size=8, log_every=1, amp="fp16", sample_rate=0.5)
    result = train(config, PrototypeDataset(count=64), os.path.join(workdir, "run"), device="cpu", progress=False)
    torch.save(
        {"step": result.step, "ce": [entry["ce"] for entry in result.history]},
        os.path.join(workdir, f"result{rank}.pt"),
    )
    assert dist.is_initialized()  # train() leaves a process group it did not create in place
    dist.destroy_process_group()
