"""Sample keys: the names ``crfiqa score`` writes for the same images, so that the two files join.

``score`` and the training datasets name a sample alike: the path relative to the scored folder
(``id_07/img_0.png``), ``FILE.rec:KEY`` for a record, the line as written for a file list; the
dataset's ``name(index)`` gives that key.
"""

from __future__ import annotations


def sample_key(dataset, index: int) -> str:
    """The key of item ``index``: the dataset's ``name(index)``, else the index itself."""
    name = getattr(dataset, "name", None)
    return name(index) if callable(name) else str(index)
