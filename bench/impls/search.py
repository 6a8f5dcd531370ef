"""Forward-only class statistics: ``crfiqa_kernels.class_stats`` against a faiss flat top-2 search.

Both find, for each embedding, the two most similar normalized class centers. faiss gets an
exact inner-product index (``IndexFlatIP``; ``GpuIndexFlatIP`` on CUDA) over the normalized centers,
built outside the timed step, and the normalized embeddings per step. faiss allocates outside
PyTorch, so its peak memory is not measured.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import crfiqa_kernels as ck

from .authors import NORM_FLOOR
from .base import Implementation, Setting, Unavailable


def _class_stats(setting: Setting):
    def step(problem):
        with setting.dtype.autocast(setting.device):
            return tuple(ck.class_stats(problem.embeddings.detach(), problem.weight.detach(), validate=False))

    return step


def _faiss_top2(setting: Setting):
    try:
        import faiss
    except ImportError as error:
        raise Unavailable(f"not installed (faiss): {error}") from None
    weight = setting.problems[0].weight.detach()
    centers = F.normalize(weight.float(), dim=1, eps=NORM_FLOOR).contiguous()
    if setting.device.type == "cuda":
        if not hasattr(faiss, "StandardGpuResources"):
            raise Unavailable("faiss here has no GPU support (faiss-cpu); install faiss-gpu")
        import faiss.contrib.torch_utils  # noqa: F401  (lets faiss take torch CUDA tensors)

        resources = faiss.StandardGpuResources()
        index = faiss.GpuIndexFlatIP(resources, centers.shape[1])
        index.add(centers)

        def query(queries):
            return index.search(queries, 2)
    else:
        faiss.omp_set_num_threads(torch.get_num_threads())
        index = faiss.IndexFlatIP(centers.shape[1])
        index.add(centers.numpy())

        def query(queries):
            return index.search(queries.numpy(), 2)

    def step(problem):
        with torch.no_grad():
            queries = F.normalize(problem.embeddings.detach().float(), dim=1, eps=NORM_FLOOR).contiguous()
        return query(queries)

    return step


CLASS_STATS = Implementation(
    "class_stats", "search", "crfiqa_kernels.class_stats: top-2 class centers", _class_stats, modes=("fwd",)
)
FAISS_TOP2 = Implementation(
    "faiss_top2", "search", "faiss exact inner-product top-2 search", _faiss_top2, modes=("fwd",), torch_memory=False
)
