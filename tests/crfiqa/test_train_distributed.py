"""Training under torch.distributed: 2 gloo processes, DDP backbone, the sharded head, fp16 autocast
with the loss scaler whose overflow check is shared by the ranks, and negative class sampling."""

import pytest
import torch
import torch.multiprocessing as mp

from crfiqa.models import build_iresnet
from crfiqa.train import load_checkpoint

from . import dist_train_worker

pytestmark = pytest.mark.slow  # multi-process gloo ranks


def test_two_process_gloo_training(tmp_path):
    mp.spawn(dist_train_worker.run, args=(2, str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"result{rank}.pt", weights_only=True) for rank in range(2)]
    # 64 images over 2 ranks in batches of 8: 4 steps; the cross-entropy is the global batch's, the
    # same on both ranks.
    assert [r["step"] for r in results] == [4, 4]
    assert len(results[0]["ce"]) == 4 and results[0]["ce"] == results[1]["ce"]
    states = [load_checkpoint(tmp_path / "run" / f"checkpoint-rank{rank}.pt") for rank in range(2)]
    assert [s["world_size"] for s in states] == [2, 2]
    # DDP keeps the backbone's parameters identical (BatchNorm statistics are per rank between the
    # broadcasts); the head's classes are split 4 + 4.
    parameters = [name for name, _ in build_iresnet(states[0]["model_config"]).named_parameters()]
    for key in parameters:
        assert torch.equal(states[0]["backbone"][key], states[1]["backbone"][key]), key
    assert [tuple(s["head"]["weight"].shape) for s in states] == [(4, 64), (4, 64)]
    assert states[0]["scaler"] == states[1]["scaler"] and states[0]["config"]["amp"] == "fp16"
    assert states[0]["config"]["sample_rate"] == 0.5  # PartialFC sampling reaches the sharded head
    assert not torch.equal(states[0]["head"]["weight"], states[1]["head"]["weight"])
    assert (tmp_path / "run" / "backbone.pth").exists()
