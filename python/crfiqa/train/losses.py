"""``TrainConfig.loss`` → the margin family of the head (``crfiqa_kernels``), and the full set of
its hyperparameters for the run log."""

from __future__ import annotations

import inspect

import crfiqa_kernels as ck

from ..options import LOSS_PARAMETERS


def _families() -> dict:
    """Loss name → (family constructor, the arguments the name fixes)."""
    return {
        "arcface": (ck.ArcFace, {}),
        "cosface": (ck.CosFace, {}),
        "elasticface-arc": (ck.ElasticFace, {"kind": "arc"}),
        "elasticface-cos": (ck.ElasticFace, {"kind": "cos"}),
        "adaface": (ck.AdaFace, {}),
        "magface": (ck.MagFace, {}),
        "curricularface": (ck.CurricularFace, {}),
    }


def build_margin(loss: str, options: dict):
    """The family ``loss`` with ``options`` over its defaults (its constructor checks the values)."""
    family, fixed = _families()[loss]
    return family(**fixed, **options)


def loss_parameters(loss: str, options: dict) -> dict:
    """Every hyperparameter of ``loss`` the command line can set, defaults filled in; ElasticFace's
    ``m`` default depends on its kind, so it is read off the built family."""
    family, fixed = _families()[loss]
    signature = inspect.signature(family)
    values = {name: signature.parameters[name].default for name in LOSS_PARAMETERS[loss]}
    values.update(options)
    if values.get("m", 0.0) is None:
        values["m"] = build_margin(loss, options).m
    return values
