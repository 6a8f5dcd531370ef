"""Sample keys: the names ``crfiqa score`` writes for the same images, so that the two files join.

Today ``score`` names a sample by its dataset's ``name(index)``: the image path as found under the
data folder, ``REC_PATH:KEY`` for a record, the line as written for a file list. This is the one
place to change when ``score``'s keys change (e.g. to paths relative to the scored folder).
"""
from __future__ import annotations


def sample_key(dataset, index: int) -> str:
    """The key of item ``index``: the dataset's ``name(index)``, else the index itself."""
    name = getattr(dataset, "name", None)
    return name(index) if callable(name) else str(index)
