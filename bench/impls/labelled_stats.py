"""``crfiqa_kernels.class_stats`` with labels: what ``crfiqa curate`` runs per batch.

With labels the own class is known, so one pass over the centers gives CCS, NNCCS and the nearest
other class; without labels (``class_stats`` in :mod:`.search`) a first pass finds the top class
and a second the runner-up. faiss's top-2 search is one pass either way.
"""

from __future__ import annotations

import crfiqa_kernels as ck

from .base import Implementation, Setting


def _class_stats_labelled(setting: Setting):
    def step(problem):
        with setting.dtype.autocast(setting.device):
            return tuple(
                ck.class_stats(problem.embeddings.detach(), problem.weight.detach(), problem.labels, validate=False)
            )

    return step


CLASS_STATS_LABELLED = Implementation(
    "class_stats_labelled",
    "search",
    "crfiqa_kernels.class_stats with labels: CCS, NNCCS (one pass)",
    _class_stats_labelled,
    modes=("fwd",),
)
