"""A pytest plugin that makes optional packages look uninstalled, to check that their tests skip.

    CRFIQA_HIDE_PACKAGES=faiss,onnx,onnxruntime python -m pytest -p tests.compat.hide_packages tests/...

Every import of a listed top-level package (and its submodules) raises ``ImportError`` as if it
were not installed (in this process; a subprocess sees the packages). Without the variable the
plugin does nothing. It is loaded with ``-p``,
before any test module is collected, so module-level imports and ``pytest.importorskip`` see the
packages missing. A package imported before the plugin loads (a pytest plugin such as
pytest_benchmark) cannot be hidden this way; the report header names it (use ``-p no:benchmark``).
"""

from __future__ import annotations

import os
import sys

VARIABLE = "CRFIQA_HIDE_PACKAGES"


def hidden_packages() -> frozenset[str]:
    return frozenset(name.strip() for name in os.environ.get(VARIABLE, "").split(",") if name.strip())


def install(names: frozenset[str]) -> frozenset[str]:
    """Hide ``names``; returns those already imported, which stay visible (a pytest plugin such as
    pytest_benchmark is loaded before this one: hide it with ``-p no:benchmark`` instead).

    A ``None`` entry in ``sys.modules`` is Python's own way to say "not importable": ``import name``
    raises ``ModuleNotFoundError`` and ``importlib.util.find_spec(name)`` returns ``None``, exactly
    as for a package that is not installed (torch probes optional packages with ``find_spec``).
    """
    loaded = frozenset(name for name in names if sys.modules.get(name) is not None)
    for name in names - loaded:
        sys.modules[name] = None
    return loaded


_STATE: dict[str, frozenset[str]] = {}


def pytest_configure(config):
    names = hidden_packages()
    _STATE["loaded"] = install(names)
    _STATE["hidden"] = names - _STATE["loaded"]


def pytest_report_header(config):
    if not _STATE.get("hidden") and not _STATE.get("loaded"):
        return None
    lines = [f"hidden packages ({VARIABLE}): {', '.join(sorted(_STATE['hidden'])) or 'none'}"]
    if _STATE.get("loaded"):
        lines.append(
            f"not hidden, imported before this plugin (use -p no:<plugin>): {', '.join(sorted(_STATE['loaded']))}"
        )
    return lines
