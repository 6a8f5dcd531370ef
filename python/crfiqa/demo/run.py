"""``crfiqa demo``: train CR-FIQA on degraded digits, then check that its quality tracks degradation.

1. Degraded digits (:mod:`.digits`): the digit is the identity; each image is degraded by a random
   kind at a random, recorded strength.
2. A small iResNet (four single-block stages, 16×16 input) trained through the fused margin head
   (``crfiqa_kernels.MarginCCSHead``) with the CR-FIQA loss, by the same loop as ``crfiqa train``.
3. The held-out images (source digits never seen in training) are scored. Reported:
   * Spearman's ρ between predicted quality and degradation strength (negative = the more degraded
     an image, the lower its predicted quality);
   * the EDC (ISO/IEC 29794-1:2024) over all genuine pairs of the held-out set: FNMR at a threshold
     fixed where 10 % of genuine pairs fail before discarding, against random rejection (which keeps
     the FNMR at its starting value in expectation) and against the recorded strength itself.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.stats import spearmanr

from crfiqa_kernels.atomic_files import write_text_atomically

from ..evaluate import edc_curve, edc_error_at, edc_pauc, plot_edc
from ..score import TorchQualityModel
from ..train import TrainConfig, train
from ..train.output_folder import run_files
from .degradations import KINDS
from .digits import NUM_CLASSES, DegradedDigits, make_digits


@dataclass(frozen=True)
class DemoSettings:
    seed: int = 0
    image_size: int = 16
    train_copies: int = 4
    depths: tuple[int, ...] = (1, 1, 1, 1)
    widths: tuple[int, ...] = (32, 64, 128, 256)
    embedding_size: int = 64
    epochs: int = 10
    lr_steps: tuple[int, ...] = (7, 9)
    batch_size: int = 64
    lr: float = 0.1
    max_steps: int | None = None  # stop early (shortened runs)
    starting_fnmr: float = 0.1
    discard_limit: float = 0.2

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            depths=list(self.depths),
            widths=list(self.widths),
            embedding_size=self.embedding_size,
            image_size=self.image_size,
            num_classes=NUM_CLASSES,
            epochs=self.epochs,
            lr_steps=list(self.lr_steps),
            base_lr=self.lr * 512 / self.batch_size,  # the recipe's lr is per 512 images
            batch_size=self.batch_size,
            seed=self.seed,
            num_workers=0,
            log_every=20,
            checkpoint_every=10_000,
        )


def _genuine_edc(held_out: DegradedDigits, embeddings: np.ndarray, quality: np.ndarray, settings: DemoSettings):
    """EDC curves over every pair of held-out images (mated = same digit) for three quality measures."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    first, second = np.triu_indices(len(unit), k=1)
    similarity = np.einsum("ij,ij->i", unit[first], unit[second])
    labels = held_out.labels.numpy()
    mated = labels[first] == labels[second]
    predicted = edc_curve(similarity, mated, quality[first], quality[second], starting_error=settings.starting_fnmr)
    strength = held_out.strength
    known = edc_curve(similarity, mated, -strength[first], -strength[second], threshold=predicted.threshold)
    draw = np.random.default_rng(settings.seed).uniform(size=len(unit))
    random = edc_curve(similarity, mated, draw[first], draw[second], threshold=predicted.threshold)
    return {"CR-FIQA quality": predicted, "known degradation strength": known, "random rejection (one draw)": random}


def run_demo(
    out_dir: str | None = None, settings: DemoSettings = DemoSettings(), *, progress: bool = True, echo=print
) -> dict:
    """Run the demo; returns the metrics (also written to ``out_dir/metrics.json`` with ``edc.png``)."""
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    train_set, held_out = make_digits(settings.image_size, train_copies=settings.train_copies, seed=settings.seed)
    echo(
        f"CR-FIQA demo: scikit-learn digits, {len(train_set)} training / {len(held_out)} held-out degraded "
        f"images of {NUM_CLASSES} identities (the digits); degradations: {', '.join(KINDS)}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = os.path.join(out_dir, "model") if out_dir else scratch
        if out_dir and run_files(model_dir):
            shutil.rmtree(model_dir)  # the model of an earlier demo here: this run makes it again
        train_started = time.perf_counter()
        result = train(
            settings.train_config(), train_set, model_dir, device="cpu", max_steps=settings.max_steps, progress=progress
        )
        train_seconds = time.perf_counter() - train_started
        model = TorchQualityModel(result.backbone, "cpu")
    embeddings, quality = model(held_out.images)

    rho, p_value = spearmanr(quality, held_out.strength)
    by_kind = {
        kind: float(spearmanr(quality[held_out.kind == k], held_out.strength[held_out.kind == k])[0])
        for k, kind in enumerate(KINDS)
    }
    curves = _genuine_edc(held_out, embeddings, quality, settings)
    predicted, known = curves["CR-FIQA quality"], curves["known degradation strength"]
    limit = settings.discard_limit
    starting = float(predicted.error_fractions[0])
    random_pauc = starting * limit  # random rejection keeps the FNMR at its starting value (expectation)
    pauc = {name: edc_pauc(curve, limit).pauc for name, curve in curves.items()}
    metrics = {
        "spearman": float(rho),
        "spearman_p_value": float(p_value),
        "spearman_by_kind": by_kind,
        "sign_convention": "Spearman rho(predicted quality, degradation strength); negative = quality falls "
        "as degradation grows",
        "edc": {
            "protocol": "EDC, ISO/IEC 29794-1:2024: pairwise quality = min, threshold fixed before discarding",
            "genuine_pairs": int(predicted.comparison_count),
            "threshold": float(predicted.threshold),
            "starting_fnmr": starting,
            "discard_limit": limit,
            "fnmr_at_discard_limit": {
                "CR-FIQA quality": float(edc_error_at(predicted, [limit])[0]),
                "known degradation strength": float(edc_error_at(known, [limit])[0]),
                "random rejection (expected)": starting,
            },
            "pauc": {**pauc, "random rejection (expected)": random_pauc},
            "pauc_reduction_vs_random": 1.0 - pauc["CR-FIQA quality"] / random_pauc,
        },
        "training": {
            "steps": result.step,
            "seconds": train_seconds,
            "final_loss": result.history[-1]["loss"] if result.history else None,
            "train_images": len(train_set),
            "held_out_images": len(held_out),
        },
        "settings": asdict(settings),
    }
    metrics["runtime_seconds"] = time.perf_counter() - started
    _print_summary(metrics, echo)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        write_text_atomically(os.path.join(out_dir, "metrics.json"), json.dumps(metrics, indent=2) + "\n")
        plot_edc(curves, os.path.join(out_dir, "edc.png"), discard_limit=limit)
        echo(f"wrote {os.path.join(out_dir, 'metrics.json')} and {os.path.join(out_dir, 'edc.png')}")
    return metrics


def _print_summary(metrics: dict, echo) -> None:
    edc, training = metrics["edc"], metrics["training"]
    limit = edc["discard_limit"]
    fnmr, pauc = edc["fnmr_at_discard_limit"], edc["pauc"]
    kinds = ", ".join(f"{kind} {value:+.2f}" for kind, value in metrics["spearman_by_kind"].items())
    echo(f"trained {training['steps']} steps in {training['seconds']:.1f} s")
    echo(
        f"Spearman rho(predicted quality, degradation strength) = {metrics['spearman']:+.3f} "
        f"(p = {metrics['spearman_p_value']:.1e}; negative: more degraded -> lower quality)"
    )
    echo(f"  per degradation: {kinds}")
    echo(
        f"EDC over {edc['genuine_pairs']} genuine held-out pairs, threshold fixed at starting FNMR "
        f"{edc['starting_fnmr']:.3f}:"
    )
    echo(
        f"  FNMR after discarding {limit:.0%}: CR-FIQA {fnmr['CR-FIQA quality']:.3f}, known degradation "
        f"strength {fnmr['known degradation strength']:.3f}, random rejection {edc['starting_fnmr']:.3f}"
    )
    echo(
        f"  pAUC up to {limit:.0%} discarded: CR-FIQA {pauc['CR-FIQA quality']:.4f} vs random rejection "
        f"{pauc['random rejection (expected)']:.4f} ({edc['pauc_reduction_vs_random']:.0%} lower)"
    )
    echo(f"total {metrics['runtime_seconds']:.1f} s")
