"""ShardedMarginCCSHead on gloo groups of 1, 2 and 3 CPU processes spawned here, compared with the
single-device op (chunked backend) on the concatenated problem.

Spawning is expensive, so each world size is spawned once per module (dist_worker.py runs several
scenarios per process) and the tests below check what the ranks saved. The 2-rank run writes the
checkpoint that the 1- and 3-rank runs load.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.multiprocessing as mp

from crfiqa_kernels import MarginCCSHead, ShardedMarginCCSHead, margin_ccs_loss
from crfiqa_kernels.parallel.negative_sampling import labels_in_sample, sample_classes
from crfiqa_kernels.parallel.sharding import class_block, normal_rows

from . import dist_worker
from .dist_worker import CLASSES, DIM, MARGIN, make_problem, rank_rows
from .oracle import TOLERANCE, Problem, assert_nn_index_attains

pytestmark = pytest.mark.slow  # multi-process gloo ranks

SCENARIOS = {
    1: ("exact", "init", "checkpoint_load"),
    2: ("exact", "validation", "sampling", "init", "checkpoint_save", "ddp"),
    3: ("exact", "validation", "sampling", "init", "checkpoint_load", "families", "elastic"),
}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype=torch.float32) -> None:
    """Equal up to the oracle suite's slack for ``dtype``, relative to the tensor's scale: the shards
    sum the softmax denominator and the gradient shares in another order."""
    scale = max(1.0, float(expected.nan_to_num().abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=0, atol=TOLERANCE[dtype] * scale, equal_nan=True)


class SpawnedRuns:
    """``runs(world)``: the list of the world's per-rank results, spawning it on first use."""

    def __init__(self, workdir) -> None:
        self.workdir = workdir
        self.done = {}

    def __call__(self, world: int) -> list[dict]:
        if world not in self.done:
            if "checkpoint_load" in SCENARIOS[world]:
                self(2)  # writes the checkpoint
            mp.spawn(dist_worker.run, args=(world, str(self.workdir), SCENARIOS[world]), nprocs=world, join=True)
            self.done[world] = [
                torch.load(self.workdir / f"world{world}-rank{rank}.pt", weights_only=True) for rank in range(world)
            ]
        return self.done[world]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return SpawnedRuns(tmp_path_factory.mktemp("distributed"))


def single_device(problem: dict, weight=None, labels=None, precision: str = "fp32", margin=MARGIN) -> dict:
    """The op on the whole problem: outputs and the gradients of the mean loss."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    embeddings = problem["embeddings"].to(dtype, copy=True).requires_grad_()
    weight = (problem["weight"] if weight is None else weight).clone().requires_grad_()
    labels = problem["labels"] if labels is None else labels
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "autocast"):
        out = margin_ccs_loss(embeddings, weight, labels, margin, backend="chunked")
    out.loss.backward()
    return {
        **out._asdict(),
        "loss": out.loss.detach(),
        "grad_embeddings": embeddings.grad,
        "grad_weight": weight.grad,
        "problem": Problem(embeddings.detach(), weight.detach(), labels, row_grad=None),
    }


def assert_statistics_match(results: list[dict], expected: dict, dtype=torch.float32) -> None:
    """Loss on every rank and the concatenation of the ranks' CCS / NNCCS / nn_index."""
    for result in results:
        assert_close(result["loss"], expected["loss"], dtype)
    for key in ("ccs", "nnccs"):
        assert_close(torch.cat([r[key] for r in results]), expected[key], dtype)
    nn_index = torch.cat([r["nn_index"] for r in results])
    if dtype == torch.float32:
        assert torch.equal(nn_index, expected["nn_index"])
    else:  # bfloat16 cosines tie often: the index must attain the nearest negative cosine
        assert_nn_index_attains(nn_index, expected["nnccs"], expected["problem"], dtype)


def assert_embedding_grads(results: list[dict], expected: dict, sizes, dtype=torch.float32) -> None:
    """Each rank's embedding gradient is world size × its rows of the global loss's gradient."""
    for rank, result in enumerate(results):
        want = len(results) * expected["grad_embeddings"][rank_rows(sizes, rank)]
        assert result["grad_embeddings"].dtype == want.dtype
        assert_close(result["grad_embeddings"].float(), want.float(), dtype)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_outputs_and_gradients_equal_the_single_device_op(ranks, world):
    results = ranks(world)
    for name, classes, sizes, precision in dist_worker.EXACT_PROBLEMS[world]:
        problem = make_problem(classes, sizes)
        expected = single_device(problem, precision=precision)
        dtype = torch.float32 if precision == "fp32" else torch.bfloat16
        per_rank = [result["exact"][name] for result in results]
        assert_statistics_match(per_rank, expected, dtype)
        assert_embedding_grads(per_rank, expected, sizes, dtype)
        for rank, result in enumerate(per_rank):
            start, count = class_block(classes, world, rank)
            assert (result["class_start"], result["num_local"]) == (start, count)
            assert_close(result["grad_weight"], expected["grad_weight"][start : start + count], dtype)
        assert [r["num_local"] for r in per_rank] == sorted((r["num_local"] for r in per_rank), reverse=True)
        assert max(r["num_local"] for r in per_rank) - min(r["num_local"] for r in per_rank) <= 1


@pytest.mark.parametrize("name", dist_worker.FAMILIES)
def test_families_with_running_state_equal_the_single_device_op(ranks, name):
    # Two steps: the second uses the state the first left, the same on every rank.
    results = [result["families"][name] for result in ranks(3)]
    problem = make_problem(CLASSES, dist_worker.FAMILY_SIZES, seed=3)
    family = dist_worker.make_family(name)
    for step in range(dist_worker.FAMILY_STEPS):
        expected = single_device(problem, margin=family)
        per_rank = [result["steps"][step] for result in results]
        assert_statistics_match(per_rank, expected)
        assert_embedding_grads(per_rank, expected, dist_worker.FAMILY_SIZES)
        for rank, result in enumerate(per_rank):
            start, count = class_block(CLASSES, 3, rank)
            assert_close(result["grad_weight"], expected["grad_weight"][start : start + count])
    for result in results:
        for buffer, value in family.named_buffers():
            assert_close(result["state"][buffer], value)
            assert not torch.equal(value, getattr(dist_worker.make_family(name), buffer))


def test_random_margins_are_drawn_alike_on_every_rank(ranks):
    # ElasticFace draws its margins anew every step; with a different default generator on every
    # rank, the sharded head still computes one loss: each rank drew the same margins.
    per_rank = [result["elastic"]["losses"] for result in ranks(3)]
    for losses in per_rank[1:]:
        assert [float(loss) for loss in losses] == [float(loss) for loss in per_rank[0]]
    assert float(per_rank[0][0]) != float(per_rank[0][1])  # new draws (and new weights) each step
    assert all(math.isfinite(float(loss)) for loss in per_rank[0])


@pytest.mark.parametrize("world", [2, 3])
def test_invalid_input_raises_the_same_error_on_every_rank(ranks, world):
    results = [result["validation"] for result in ranks(world)]
    too_large = {r["label_too_large"] for r in results}
    too_large_message = f"ValueError: local_labels must be < num_classes = {CLASSES}, got {CLASSES} on rank {world - 1}"
    assert too_large == {too_large_message}
    below = {r["label_below_minus_one"] for r in results}
    assert below == {"ValueError: local_labels must be ≥ -1 (-1 marks an ignored row), got -2 on rank 0"}
    assert results[0]["wrong_width"] == f"ValueError: local_embeddings must have shape (B, {DIM}), got (3, {DIM + 1})"
    assert {r["wrong_width"] for r in results[1:]} == {
        "ValueError: local_embeddings or local_labels of rank(s) [0] are invalid (see the error there)"
    }
    assert all(r["mixed_dtypes"].startswith("TypeError: local_embeddings must have the same dtype") for r in results)
    empty_message = "ValueError: the global batch is empty: every rank passed 0 rows"
    assert {r["empty_global_batch"] for r in results} == {empty_message}
    # The group survives: the next valid step is exact.
    problem = make_problem(CLASSES, (3,) * world)
    assert_statistics_match([r["after"] for r in results], single_device(problem))


def _sampled_problem(problem: dict, sampled: torch.Tensor) -> dict:
    """The concatenated problem restricted to the sampled classes (labels as positions)."""
    labels = labels_in_sample(problem["labels"], sampled, CLASSES)
    return {**problem, "weight": problem["weight"][sampled], "labels": labels}


@pytest.mark.parametrize("world", [2, 3])
def test_negative_sampling(ranks, world):
    results = [result["sampling"] for result in ranks(world)]
    problem = make_problem(CLASSES, (6,) * world, seed=1)
    full = single_device(problem)
    for rate in dist_worker.SAMPLE_RATES:
        per_rank = [result[rate] for result in results]
        sampled = torch.cat([r["sampled"] for r in per_rank])
        for rank, result in enumerate(per_rank):
            start, count = class_block(CLASSES, world, rank)
            mine = result["sampled"]
            positives = problem["labels"][(problem["labels"] >= start) & (problem["labels"] < start + count)].unique()
            assert torch.equal(mine, mine.unique()) and bool(((mine >= start) & (mine < start + count)).all())
            assert set(positives.tolist()) <= set(mine.tolist())
            assert result["num_sample"] == math.ceil(rate * count)
            assert mine.numel() == max(result["num_sample"], positives.numel())
        # The statistics stay exact over every class; the loss is the op's over the sample.
        expected = single_device(_sampled_problem(problem, sampled))
        for key in ("ccs", "nnccs", "nn_index"):
            expected[key] = full[key]
        assert_statistics_match(per_rank, expected)
        assert_embedding_grads(per_rank, expected, problem["sizes"])
        grad_weight = torch.cat([r["grad_weight"] for r in per_rank])
        assert_close(grad_weight[sampled], expected["grad_weight"])
        outside = torch.ones(CLASSES, dtype=torch.bool)
        outside[sampled] = False
        assert bool((grad_weight[outside] == 0).all())
    # With rate 0.02 the sample is the positives alone; in eval mode every class counts.
    assert sum(r[0.02]["sampled"].numel() for r in results) < sum(r[0.02]["num_local"] for r in results)
    eval_results = [result["eval"] for result in results]
    assert all(r["sampled"] is None for r in eval_results)
    assert_statistics_match(eval_results, full)


def test_initialization_does_not_depend_on_the_world_size(ranks):
    fulls = []
    for world in (1, 2, 3):
        results = [result["init"] for result in ranks(world)]
        full = results[0]["full"]["weight"]
        assert all(r["full"] is None for r in results[1:])
        for r in results:
            assert torch.equal(r["shard"], full[r["class_start"] : r["class_start"] + r["num_local"]])
        fulls.append(full)
    assert fulls[0].shape == (dist_worker.INIT_CLASSES, dist_worker.INIT_DIM)
    assert torch.equal(fulls[0], fulls[1]) and torch.equal(fulls[0], fulls[2])
    assert abs(float(fulls[0].std()) - 0.01) < 3e-4 and abs(float(fulls[0].mean())) < 3e-4


def test_checkpoint_saved_with_two_ranks_loads_with_three_and_one(ranks):
    saved = [result["checkpoint_save"] for result in ranks(2)]
    for rank, result in enumerate(saved):
        start, count = class_block(CLASSES, 2, rank)
        extra_state = {"num_classes": CLASSES, "class_start": start, "num_local": count}
        assert result["state_dict"]["_extra_state"] == extra_state
        assert result["state_dict"]["weight"].shape == (count, DIM)
        # Rank 0 could not write; the other rank learns it from rank 0 and raises too.
        assert result["unwritable"] == ("FileNotFoundError" if rank == 0 else "OSError")
    full = torch.cat([r["state_dict"]["weight"] for r in saved])

    # The single-device head loads the file as it is and gives the 2-rank outputs.
    single = MarginCCSHead(CLASSES, DIM, MARGIN)
    single.load_state_dict(torch.load(ranks.workdir / "head.pt", weights_only=True))
    assert torch.equal(single.weight.detach(), full)
    problem = make_problem(CLASSES, (8,), seed=2)
    expected = single_device(problem, weight=full)
    assert_statistics_match([r["step"] for r in saved], expected)

    for world in (3, 1):
        results = [result["checkpoint_load"] for result in ranks(world)]
        assert_statistics_match([r["step"] for r in results], expected)
        for rank, result in enumerate(results):
            assert result["single_device_block"]
            if rank < 2:
                assert result["mismatched_shard"].startswith("ValueError: this state dict is the shard")
            assert result["shifted_shard"].startswith("ValueError: this state dict is the shard")
            assert result["unchanged"]


def test_ddp_backbone_gets_the_gradient_of_the_global_loss(ranks):
    results = [result["ddp"] for result in ranks(2)]
    problem = make_problem(CLASSES, (5, 2))
    backbone = dist_worker.make_backbone()
    weight = problem["weight"].clone().requires_grad_()
    embeddings = backbone(dist_worker.backbone_inputs(7))
    margin_ccs_loss(embeddings, weight, problem["labels"], MARGIN, backend="chunked").loss.backward()
    for result in results:
        for name, param in backbone.named_parameters():
            assert_close(result["backbone_grads"][name], param.grad)
    assert_close(torch.cat([r["grad_weight"] for r in results]), weight.grad)


# Without a process group: argument checks and the building blocks.


@pytest.mark.parametrize(
    "args, options, error, match",
    [
        ((10.0, 8), {}, TypeError, "num_classes"),
        ((1, 8), {}, ValueError, "num_classes"),
        ((10, 0), {}, ValueError, "embedding_size"),
        ((10, 8), {"sample_rate": 0.0}, ValueError, "sample_rate"),
        ((10, 8), {"sample_rate": "all"}, TypeError, "sample_rate"),
        ((10, 8), {"backend": "reference"}, ValueError, "backend"),
        ((10, 8), {"margin_grad": "none"}, ValueError, "margin_grad"),
        ((10, 8), {}, RuntimeError, "process group"),
    ],
)
def test_constructor_checks_arguments_first(args, options, error, match):
    with pytest.raises(error, match=match):
        ShardedMarginCCSHead(*args, **options)


def test_class_blocks_are_contiguous_and_balanced():
    for classes, world in ((11, 3), (130, 3), (2_059_906, 8), (7, 7)):
        blocks = [class_block(classes, world, rank) for rank in range(world)]
        assert blocks[0][0] == 0 and sum(count for _, count in blocks) == classes
        assert all(blocks[r][0] + blocks[r][1] == blocks[r + 1][0] for r in range(world - 1))
        assert [count for _, count in blocks] == sorted((count for _, count in blocks), reverse=True)
        assert blocks[0][1] - blocks[-1][1] <= 1
    assert class_block(2_059_906, 8, 0) == (0, 257_489)


def test_normal_rows_are_slices_of_one_matrix():
    whole = normal_rows(0, 9000, 4, seed=5)
    assert torch.equal(normal_rows(4000, 300, 4, seed=5), whole[4000:4300])
    assert not torch.equal(normal_rows(0, 10, 4, seed=6), whole[:10])
    with pytest.raises(ValueError, match="seed"):
        normal_rows(0, 10, 4, seed=-1)


def test_sample_keeps_positives_and_fills_with_distinct_negatives():
    labels = torch.tensor([3, -1, 17, 3, 40])
    torch.manual_seed(0)
    sampled = sample_classes(labels, 50, 10)
    assert sampled.numel() == 10 and torch.equal(sampled, sampled.unique())
    assert {3, 17, 40} <= set(sampled.tolist())
    assert sample_classes(labels, 50, 2).tolist() == [3, 17, 40]
    relabelled = labels_in_sample(labels, sampled, 50)
    assert relabelled[1] == -1
    assert torch.equal(sampled[relabelled[[0, 2, 3, 4]]], labels[[0, 2, 3, 4]])
