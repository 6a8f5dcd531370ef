"""``curate`` measured on data with a known truth: the demo's degraded digits with 5 % of the training
labels flipped and one identity split into two labels.

    python -m bench.known_truth --out curate-truth      # ~1 min on 2 CPU cores

1. The demo's training images (:func:`crfiqa.demo.make_digits`); the digit is the identity.
2. One identity (digit 3 by default) is split in two: half of its source images (all their degraded
   copies) get the new label 10, so 11 labels name 10 identities.
3. 5 % of the samples get a wrong label: drawn uniformly among the labels of *other* identities
   (a move between the two halves of the split identity would not be a wrong identity).
4. The images are written as identity folders (``DATA/id00 … id10``, lossless PNG); CR-FIQA is
   trained on them with the demo's recipe (11 classes); ``crfiqa curate`` runs on the folders.
5. From ``samples.csv`` and ``summary.json``: precision and recall of "likely mislabeled" against the
   flipped set, precision at the number flipped (the ranking by NNCCS − CCS), and where the split
   pair stands in the duplicate list.

Writes ``OUT/data``, ``OUT/model``, ``OUT/report`` and ``OUT/known_truth.json``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

from crfiqa.curate.data import open_labelled_data
from crfiqa.curate.model import load_curate_model
from crfiqa.curate.run import CurateOptions, curate
from crfiqa.curate.settings import DUPLICATE, MISLABELED
from crfiqa.demo import DemoSettings, make_digits
from crfiqa.train import train
from crfiqa_kernels.atomic_files import write_text_atomically

ORIGINAL_CLASSES = 10


@dataclass(frozen=True)
class KnownTruthSettings:
    demo: DemoSettings = DemoSettings()
    flip_fraction: float = 0.05
    split_identity: int = 3
    seed: int = 0


def noisy_labels(labels: np.ndarray, sources: np.ndarray, settings: KnownTruthSettings):
    """``(new labels, flipped mask)``: the split identity's second half is label 10, then 5 % flipped."""
    rng = np.random.default_rng(settings.seed + 1)
    new = labels.copy()
    split = settings.split_identity
    split_sources = np.unique(sources[labels == split])
    moved = rng.choice(split_sources, len(split_sources) // 2, replace=False)
    new[np.isin(sources, moved)] = ORIGINAL_CLASSES
    identity = np.where(np.arange(ORIGINAL_CLASSES + 1) == ORIGINAL_CLASSES, split, np.arange(ORIGINAL_CLASSES + 1))
    flipped = np.zeros(len(labels), bool)
    chosen = rng.choice(len(labels), int(round(settings.flip_fraction * len(labels))), replace=False)
    for sample in np.sort(chosen):
        others = np.flatnonzero(identity != identity[new[sample]])
        new[sample] = rng.choice(others)
        flipped[sample] = True
    return new, flipped


def write_identity_folders(folder: str, images: torch.Tensor, labels: np.ndarray) -> list[str]:
    """``folder/idLL/NNNNN.png`` per sample (NNNNN its index); returns the paths in index order."""
    pixels = np.round((images[:, 0].numpy() * 0.5 + 0.5) * 255.0).clip(0, 255).astype(np.uint8)
    paths = []
    for index, (image, label) in enumerate(zip(pixels, labels, strict=True)):
        path = os.path.join(folder, f"id{int(label):02d}", f"{index:05d}.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(image, mode="L").save(path)
        paths.append(path)
    return paths


def _read_flags(samples_csv: str):
    """``(dataset index from the key's file name, flagged mislabeled, NNCCS − CCS, flagged duplicate)`` per row."""
    index, flagged, suspicion, duplicate = [], [], [], []
    with open(samples_csv, encoding="utf-8", newline="") as file:
        for row in csv.DictReader(file):
            index.append(int(os.path.splitext(os.path.basename(row["key"]))[0]))
            flags = row["flags"].split(";")
            flagged.append(MISLABELED in flags)
            duplicate.append(DUPLICATE in flags)
            suspicion.append(float(row["nnccs"]) - float(row["ccs"]))
    return np.array(index), np.array(flagged), np.array(suspicion), np.array(duplicate)


def _by_margin(suspicion, duplicate, truth, margins=(0.0, 0.1, 0.2, 0.3)) -> list[dict]:
    """Precision and recall of the mislabel rule at other ``--mislabel-margin`` values (same report)."""
    rows = []
    for margin in margins:
        flagged = (suspicion > margin) & ~duplicate
        hits = int((flagged & truth).sum())
        rows.append(
            {
                "margin": margin,
                "flagged": int(flagged.sum()),
                "precision": hits / max(int(flagged.sum()), 1),
                "recall": hits / max(int(truth.sum()), 1),
            }
        )
    return rows


def demo_settings(seed: int = 0, epochs: int | None = None, train_copies: int | None = None) -> DemoSettings:
    """The demo's recipe, shortened to ``epochs`` as ``crfiqa demo --epochs`` does (lr steps scaled)."""
    demo = DemoSettings(seed=seed)
    if epochs is not None:
        scale = epochs / demo.epochs
        demo = dataclasses.replace(
            demo, epochs=epochs, lr_steps=tuple(max(1, round(step * scale)) for step in demo.lr_steps)
        )
    if train_copies is not None:
        demo = dataclasses.replace(demo, train_copies=train_copies)
    return demo


def checkpoint_step(checkpoint: str) -> int:
    """The training step a checkpoint was saved at."""
    return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["position"]["step"])


def measure(
    out_dir: str,
    settings: KnownTruthSettings | None = None,
    options: CurateOptions | None = None,
    *,
    progress: bool = True,
    echo=print,
    reuse_model: bool = False,
) -> dict:
    """Build the noisy data, train (unless ``reuse_model`` and OUT/model/checkpoint.pt exists), curate, score
    (``settings`` and ``options`` default to :class:`KnownTruthSettings` and :class:`CurateOptions`)."""
    settings = KnownTruthSettings() if settings is None else settings
    options = CurateOptions() if options is None else options
    started = time.perf_counter()
    demo = settings.demo
    torch.manual_seed(demo.seed)
    train_set, _ = make_digits(demo.image_size, train_copies=demo.train_copies, seed=demo.seed)
    original = train_set.labels.numpy()
    labels, flipped = noisy_labels(original, train_set.source, settings)
    train_set.labels = torch.from_numpy(labels)
    train_set.num_identities = ORIGINAL_CLASSES + 1
    data_dir, model_dir, report_dir = (os.path.join(out_dir, name) for name in ("data", "model", "report"))
    write_identity_folders(data_dir, train_set.images, labels)
    echo(
        f"known truth: {len(labels)} degraded digits, identity {settings.split_identity} split into labels "
        f"{settings.split_identity} and {ORIGINAL_CLASSES}, {int(flipped.sum())} labels flipped; data in {data_dir}"
    )

    config = dataclasses.replace(demo.train_config(), num_classes=ORIGINAL_CLASSES + 1)
    train_started = time.perf_counter()
    checkpoint = os.path.join(model_dir, "checkpoint.pt")
    reused = reuse_model and os.path.isfile(checkpoint)
    if not reused:
        checkpoint = train(
            config, train_set, model_dir, device="cpu", max_steps=demo.max_steps, progress=progress
        ).checkpoint
    train_seconds = time.perf_counter() - train_started
    steps = checkpoint_step(checkpoint)

    model = load_curate_model(checkpoint, "cpu")
    dataset = open_labelled_data(data_dir, model.input_size)
    curate_started = time.perf_counter()
    summary = curate(
        model, dataset, report_dir, options, model_name=checkpoint, data_name=data_dir, progress=progress, echo=echo
    )
    curate_seconds = time.perf_counter() - curate_started

    index, flagged, suspicion, duplicate_flag = _read_flags(os.path.join(report_dir, "samples.csv"))
    truth = flipped[index]
    hits = int((flagged & truth).sum())
    top = np.argsort(-suspicion, kind="stable")[: int(truth.sum())]
    split_pair = (min(settings.split_identity, ORIGINAL_CLASSES), max(settings.split_identity, ORIGINAL_CLASSES))
    pairs = summary["duplicate_pairs"]
    rank = next((i + 1 for i, pair in enumerate(pairs) if (pair["first"], pair["second"]) == split_pair), None)
    split = pairs[rank - 1] if rank else None
    others = [pair for pair in pairs if (pair["first"], pair["second"]) != split_pair]
    by_cosine = sorted(pairs, key=lambda pair: -pair["cosine"])
    metrics = {
        "samples": len(index),
        "flipped": int(truth.sum()),
        "flagged_mislabeled": int(flagged.sum()),
        "true_positives": hits,
        "precision": hits / max(int(flagged.sum()), 1),
        "recall": hits / max(int(truth.sum()), 1),
        "precision_at_flipped_count": float(truth[top].mean()),
        "by_margin": _by_margin(suspicion, duplicate_flag, truth),
        "split_pair": list(split_pair),
        "split_pair_rank": rank,
        "split_pair_share": split["share"] if split else None,
        "split_pair_cosine": split["cosine"] if split else None,
        "split_pair_flagged": split["flagged"] if split else False,
        "split_pair_rank_by_center_cosine": next(
            (i + 1 for i, pair in enumerate(by_cosine) if (pair["first"], pair["second"]) == split_pair), None
        ),
        "best_other_share": max((pair["share"] for pair in others), default=None),
        "best_other_cosine": max((pair["cosine"] for pair in others), default=None),
        "other_pairs_flagged": sum(pair["flagged"] for pair in others),
        "duplicate_pairs_flagged": summary["counts"]["duplicate_pairs"],
        "false_positive_strength": float(train_set.strength[index][flagged & ~truth].mean())
        if (flagged & ~truth).any()
        else None,  # mean degradation strength (0 … 1) of the flagged samples whose label was right
        "true_positive_strength": float(train_set.strength[index][flagged & truth].mean()) if hits else None,
        "mean_strength": float(train_set.strength.mean()),
        "train_steps": steps,
        "model_reused": reused,
        "train_seconds": train_seconds,
        "curate_seconds": curate_seconds,
        "curate_samples_per_second": summary["samples_per_second"],
        "total_seconds": time.perf_counter() - started,
        "settings": {**asdict(settings), "thresholds": options.flags.to_dict()},
        "commands": {
            "measure": f"python -m bench.known_truth --out {out_dir}",
            "curate": f"crfiqa curate {checkpoint} {data_dir} --output {report_dir}",
        },
    }
    write_text_atomically(os.path.join(out_dir, "known_truth.json"), json.dumps(metrics, indent=2) + "\n")
    echo(
        f"likely mislabeled: precision {metrics['precision']:.3f}, recall {metrics['recall']:.3f} "
        f"({hits} of {int(flagged.sum())} flagged were flipped; {int(truth.sum())} flipped); precision at the "
        f"number flipped {metrics['precision_at_flipped_count']:.3f}"
    )
    if split:
        echo(
            f"split identity {split_pair}: rank {rank} of the duplicate list (flagged: {split['flagged']}), mutual "
            f"nearest share {split['share']:.3f} (best other pair {metrics['best_other_share']:.3f}), center cosine "
            f"{split['cosine']:+.3f} (rank {metrics['split_pair_rank_by_center_cosine']} by cosine; best other "
            f"{metrics['best_other_cosine']:+.3f}); other pairs flagged: {metrics['other_pairs_flagged']}"
        )
    else:
        echo(f"split identity {split_pair}: not among the duplicate candidates")
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.known_truth", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for data, model, report and known_truth.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="training epochs (default: the demo's 10)")
    parser.add_argument("--flip-fraction", type=float, default=0.05)
    parser.add_argument("--train-copies", type=int, help="degraded copies per source image (default: the demo's 4)")
    parser.add_argument("--reuse-model", action="store_true", help="keep OUT/model/checkpoint.pt if it exists")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    demo = demo_settings(args.seed, args.epochs, args.train_copies)
    settings = KnownTruthSettings(demo=demo, flip_fraction=args.flip_fraction, seed=args.seed)
    measure(args.out, settings, progress=not args.no_progress, reuse_model=args.reuse_model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
