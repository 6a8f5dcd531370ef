"""Evaluation of face image quality: EDC and ERC curves, verification sets, templates.

Two curve protocols, named everywhere they are reported:

* **EDC** (:func:`edc_curve`, :func:`edc_pauc`) — the Error-versus-Discard Characteristic of
  ISO/IEC 29794-1:2024 and Schlett et al. (2023): fixed threshold, pairwise quality = min, a point
  at every distinct quality value, stepwise pAUC against the theoretical best.
* **ERC** (:func:`erc_curve`, :func:`erc_auc`) — the CR-FIQA paper's Error-versus-Reject protocol:
  fixed discard steps of all pairs, threshold re-fitted at each step, trapezoid AUC.

The command line is ``crfiqa evaluate`` (or ``python -m crfiqa.evaluate``): :mod:`.inputs` reads and
joins the files, :mod:`.evaluation` computes the curves, :mod:`.report` writes the results.
"""

from ..formats import PairList, read_pair_list, read_quality_scores, sample_key, write_pair_list, write_quality_scores
from .edc import (
    EdcCurve,
    EdcPAUC,
    edc_curve,
    edc_error_at,
    edc_pauc,
    edc_theoretical_best,
    threshold_at_fmr,
    threshold_at_fnmr,
)
from .erc import ERC_DISCARD_FRACTIONS, ErcCurve, erc_auc, erc_curve
from .plots import plot_edc, plot_erc
from .templates import (
    DEFAULT_FARS,
    TemplateFeatures,
    quality_weights,
    tar_at_far,
    template_features,
    template_similarity,
)
from .verification import (
    UnsafePickleError,
    VerificationAccuracy,
    VerificationSet,
    embed_verification_set,
    read_verification_bin,
    verification_accuracy,
)

__all__ = [
    "DEFAULT_FARS",
    "ERC_DISCARD_FRACTIONS",
    "EdcCurve",
    "EdcPAUC",
    "ErcCurve",
    "PairList",
    "TemplateFeatures",
    "UnsafePickleError",
    "VerificationAccuracy",
    "VerificationSet",
    "edc_curve",
    "edc_error_at",
    "edc_pauc",
    "edc_theoretical_best",
    "embed_verification_set",
    "erc_auc",
    "erc_curve",
    "plot_edc",
    "plot_erc",
    "quality_weights",
    "read_pair_list",
    "read_quality_scores",
    "read_verification_bin",
    "sample_key",
    "tar_at_far",
    "template_features",
    "template_similarity",
    "threshold_at_fmr",
    "threshold_at_fnmr",
    "verification_accuracy",
    "write_pair_list",
    "write_quality_scores",
]
