"""faiss class-center search: agreement with class_stats, ranking and ties, identification, IVF recall."""

import numpy as np
import pytest
import torch

pytest.importorskip("faiss")  # an optional dependency (the GPU image has none): skip cleanly without it

from crfiqa_kernels import class_stats, search
from crfiqa_kernels.reference import cosine_matrix


def _inputs(rows=37, classes=1001, dim=24, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rows, dim, generator=gen), torch.randn(classes, dim, generator=gen) * 3


def _assert_same_stats(found, expected):
    torch.testing.assert_close(found.ccs, expected.ccs, rtol=0, atol=1e-6, equal_nan=True)
    torch.testing.assert_close(found.nnccs, expected.nnccs, rtol=0, atol=1e-6)
    assert torch.equal(found.nn_index, expected.nn_index)
    assert torch.equal(found.top_class, expected.top_class)


def test_exact_search_agrees_with_class_stats():
    embeddings, weight = _inputs()
    labels = torch.randint(0, 1001, (37,), generator=torch.Generator().manual_seed(1))
    labels[[3, 20]] = -1
    labels[5] = cosine_matrix(embeddings[5:6], weight).argmax()  # a row whose own class is the top one
    index = search.ClassCenterIndex(weight)
    _assert_same_stats(index.class_stats(embeddings, labels), class_stats(embeddings, weight, labels))
    _assert_same_stats(index.class_stats(embeddings), class_stats(embeddings, weight))
    # numpy inputs give the same
    _assert_same_stats(index.class_stats(embeddings.numpy(), labels.numpy()), class_stats(embeddings, weight, labels))


def test_ties_go_to_the_lowest_class_index():
    _, weight = _inputs(classes=300)
    duplicated = torch.cat([weight[:4], weight[:4] * 2.0, weight[4:]])  # classes j and j + 4 are the same center
    queries = weight[:4] + 1e-3
    index = search.ClassCenterIndex(duplicated)
    scores, classes = index.search(queries, 3)
    np.testing.assert_array_equal(classes[:, :2], [[0, 4], [1, 5], [2, 6], [3, 7]])
    assert (scores[:, 0] == scores[:, 1]).all()
    for labels in (torch.tensor([4, 5, 2, -1]), torch.tensor([0, 1, 6, 7]), None):
        _assert_same_stats(index.class_stats(queries, labels), class_stats(queries, duplicated, labels))


def test_search_ranks_by_cosine():
    embeddings, weight = _inputs(rows=9)
    scores, classes = search.ClassCenterIndex(weight.numpy().astype(np.float64)).search(embeddings, 5)
    exact = cosine_matrix(embeddings.double(), weight.double()).topk(5, dim=1)
    np.testing.assert_array_equal(classes, exact.indices.numpy())
    np.testing.assert_allclose(scores, exact.values.numpy(), atol=1e-6)


def test_identification_rate():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((500, 32)).astype(np.float32)
    labels = rng.integers(0, 500, 200)
    near = centers[labels] + 0.1 * rng.standard_normal((200, 32)).astype(np.float32)
    index = search.ClassCenterIndex(centers)
    assert index.identification_rate(near, labels, ranks=(1, 5)) == {1: 1.0, 5: 1.0}
    far = rng.standard_normal((200, 32)).astype(np.float32)
    cosine = far @ (centers / np.linalg.norm(centers, axis=1, keepdims=True)).T
    rank_of_label = (cosine > cosine[np.arange(200), labels][:, None]).sum(1)
    rates = index.identification_rate(far, labels, ranks=(1, 10))
    assert rates == {1: np.mean(rank_of_label < 1), 10: np.mean(rank_of_label < 10)}


def test_ivf_recall_is_measured_and_high_enough():
    rng = np.random.default_rng(0)
    classes, dim = 8000, 32
    centers = rng.standard_normal((classes, dim)).astype(np.float32)
    labels = rng.integers(0, classes, 300)
    # Queries near their class center, as embeddings of the class's own samples are.
    queries = centers[labels] + 0.3 * rng.standard_normal((300, dim)).astype(np.float32)
    ivf = search.ClassCenterIndex(centers, method="ivf", nprobe=16)
    assert ivf.nlist == 205  # 8000 // 39 cells: each trains on ≥ 39 centers
    exact = search.ClassCenterIndex(centers)
    assert exact.recall(queries, k=10) == 1.0
    recall_1, recall_10 = ivf.recall(queries, k=1), ivf.recall(queries, k=10)
    print(
        f"IVF (nlist {ivf.nlist}, nprobe 16) on {classes} random centers: recall@1 {recall_1:.3f}, "
        f"10-recall@10 {recall_10:.3f}"
    )
    assert recall_1 >= 0.95
    assert 0.3 <= recall_10 <= 1.0
    more = search.ClassCenterIndex(centers, method="ivf", nprobe=ivf.nlist)  # every cell: exact
    assert more.recall(queries, k=10) == 1.0
    found = ivf.class_stats(queries, labels)
    reference = exact.class_stats(queries, labels)
    torch.testing.assert_close(found.ccs, reference.ccs)
    assert (found.top_class == reference.top_class).float().mean() >= 0.95


def test_nprobe_changes_without_rebuilding():
    rng = np.random.default_rng(5)
    centers = rng.standard_normal((4000, 16)).astype(np.float32)
    queries = rng.standard_normal((200, 16)).astype(np.float32)
    tuned = search.ClassCenterIndex(centers, method="ivf", nprobe=1)
    tuned.nprobe = 8
    built = search.ClassCenterIndex(centers, method="ivf", nprobe=8)
    assert tuned.nprobe == 8
    np.testing.assert_array_equal(tuned.search(queries, 5)[1], built.search(queries, 5)[1])
    tuned.nprobe = 10 * tuned.nlist  # capped at every cell: exact
    assert tuned.nprobe == tuned.nlist and tuned.recall(queries, k=5) == 1.0
    with pytest.raises(ValueError, match="nprobe must be"):
        tuned.nprobe = 0
    with pytest.raises(ValueError, match="method='ivf' only"):
        search.ClassCenterIndex(centers).nprobe = 4


def test_bad_arguments():
    embeddings, weight = _inputs(rows=3, classes=10)
    with pytest.raises(ValueError, match="method must be"):
        search.ClassCenterIndex(weight, method="hnsw")
    with pytest.raises(TypeError, match="weight must be a torch.Tensor or numpy.ndarray"):
        search.ClassCenterIndex(weight.tolist())
    with pytest.raises(ValueError, match="at least 2 classes"):
        search.ClassCenterIndex(weight[:1])
    with pytest.raises(ValueError, match="nlist must be"):
        search.ClassCenterIndex(weight, method="ivf", nlist=11)
    index = search.ClassCenterIndex(weight)
    with pytest.raises(ValueError, match="embeddings have size"):
        index.search(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="k must be"):
        index.search(embeddings, 11)
    with pytest.raises(ValueError, match=r"labels must lie in \[-1, 9\]"):
        index.class_stats(embeddings, torch.tensor([0, 1, 10]))
    with pytest.raises(ValueError, match="labels must have shape"):
        index.class_stats(embeddings, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="no -1"):
        index.identification_rate(embeddings, [0, -1, 2])
    if not search.gpu_available():
        with pytest.raises(RuntimeError, match="use_gpu=True"):
            search.ClassCenterIndex(weight, use_gpu=True)
