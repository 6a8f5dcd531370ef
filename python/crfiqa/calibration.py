"""A 0–100 quality scale for raw CR-FIQA scores, fitted to a reference set in OFIQ's form.

Raw scores have no fixed range (they regress a certainty ratio, and released ONNX models give
values near −20). OFIQ (ISO/IEC 29794-5) maps a native quality ``x`` to

    Q = round(100 / (1 + exp((x0 − x) / w))),   clamped to [0, 100].

From the reference's raw scores, ``x0 = (p5 + p95) / 2`` and ``w = (p95 − p5) / (2 ln 9)``: at
``x = p5``, ``(x0 − x) / w = ((p95 − p5) / 2) · (2 ln 9) / (p95 − p5) = ln 9``, so
``Q = 100 / (1 + 9) = 10``; at ``x = p95`` the exponent is ``−ln 9`` and ``Q = 100 / (1 + 1/9) = 90``.
Percentiles are numpy's default (linear interpolation between order statistics); rounding is half
up. The file records the SHA-256 of the model it was fitted for, and is refused for another.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass

import numpy as np

# Below 20 scores the 5 % tail holds less than one image: p5 and p95 would be interpolations of
# the two extremes rather than percentiles.
MIN_REFERENCE = 20
FORMAT = "crfiqa-calibration"
LN9 = math.log(9.0)


@dataclass(frozen=True)
class Calibration:
    x0: float
    w: float
    p5: float
    p95: float
    reference_size: int
    model_sha256: str
    model: str  # the model file's name when fitted (informative; the hash decides)

    def __call__(self, raw) -> np.ndarray:
        """The integer 0–100 quality of each raw score."""
        raw = np.asarray(raw, dtype=np.float64)
        with np.errstate(over="ignore"):  # exp overflows to inf for very low scores: Q = 0
            value = 100.0 / (1.0 + np.exp((self.x0 - raw) / self.w))
        return np.clip(np.floor(value + 0.5), 0, 100).astype(np.int64)

    def check_model(self, model_path: str | os.PathLike, source: str) -> None:
        """``ValueError`` unless ``model_path`` is the model this calibration was fitted for."""
        digest = file_sha256(model_path)
        if digest != self.model_sha256:
            raise ValueError(
                f"{source} was fitted for another model ({self.model}, sha256 {self.model_sha256[:12]}…), "
                f"not {model_path} (sha256 {digest[:12]}…); run crfiqa calibrate for this model"
            )


def fit_calibration(raw, model_path: str | os.PathLike) -> Calibration:
    """The calibration of ``model_path`` from the raw scores of a reference set."""
    raw = np.asarray(raw, dtype=np.float64).reshape(-1)
    raw = raw[np.isfinite(raw)]
    if len(raw) < MIN_REFERENCE:
        raise ValueError(f"a reference of {len(raw)} scored image(s) is too small to calibrate: need {MIN_REFERENCE}")
    p5, p95 = (float(value) for value in np.percentile(raw, [5, 95]))
    if not p95 > p5:
        raise ValueError(f"the reference's scores are too uniform to calibrate: p5 = p95 = {p5!r}")
    return Calibration(
        x0=(p5 + p95) / 2,
        w=(p95 - p5) / (2 * LN9),
        p5=p5,
        p95=p95,
        reference_size=len(raw),
        model_sha256=file_sha256(model_path),
        model=os.path.basename(os.fspath(model_path)),
    )


def save_calibration(path: str | os.PathLike, calibration: Calibration) -> None:
    from crfiqa_kernels.atomic_files import write_text_atomically

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_text_atomically(path, json.dumps({"format": FORMAT, **asdict(calibration)}, indent=1) + "\n")


def load_calibration(path: str | os.PathLike) -> Calibration:
    """A calibration file; ``ValueError`` naming the file when it is not one."""
    try:
        with open(path, encoding="utf-8") as file:
            payload = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"{path} is not a calibration file (not JSON)") from None
    if not isinstance(payload, dict) or payload.pop("format", None) != FORMAT:
        raise ValueError(f"{path} is not a calibration file (written by crfiqa calibrate)")
    try:
        calibration = Calibration(**payload)
        usable = math.isfinite(calibration.x0) and math.isfinite(calibration.w) and calibration.w > 0
    except TypeError:
        raise ValueError(f"{path}: not the fields and types of a calibration file") from None
    if not usable:
        raise ValueError(f"{path}: x0 and w must be finite and w positive, got {calibration.x0} and {calibration.w}")
    return calibration


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
