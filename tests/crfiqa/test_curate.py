"""crfiqa curate: exact statistics, the flags' rules, the report files, keys shared with score, bad input."""

import csv
import json
import os

import numpy as np
import pytest
import torch

from crfiqa.cli import INPUT_ERROR, main
from crfiqa.curate import (
    REPORT_FILES,
    CurateOptions,
    FlagSettings,
    compute_flags,
    curate,
    load_curate_model,
    nearest_centers,
    open_labelled_data,
    sample_stats,
)
from crfiqa.curate.stats import SampleStats

from .synthetic import calibrated_backbone, write_images

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = 5


def _checkpoint(path, classes=CLASSES, seed=0):
    """A training checkpoint as the loop writes it (backbone, model_config, head, config)."""
    backbone = calibrated_backbone(seed)
    centers = torch.randn(classes, 16, generator=torch.Generator().manual_seed(seed))
    torch.save(
        {
            "format": 1,
            "config": {"cr": "paper"},
            "model_config": backbone.config,
            "backbone": backbone.state_dict(),
            "head": {"weight": centers},
        },
        path,
    )
    return str(path), backbone, centers


@pytest.fixture
def identities(tmp_path):
    for identity in range(4):
        write_images(tmp_path / "data" / f"id{identity}", 3, seed=identity)
    return str(tmp_path / "data")


@pytest.fixture
def checkpoint(tmp_path):
    return _checkpoint(tmp_path / "checkpoint.pt")


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crfiqa curate: error: "), err
    return err[0]


def test_sample_statistics_are_exact(identities, checkpoint):
    path, backbone, centers = checkpoint
    model = load_curate_model(path)
    dataset = open_labelled_data(identities, model.input_size)
    samples, totals = sample_stats(model, dataset, batch_size=5, progress=False)
    images = torch.stack([dataset[i][0] for i in samples.index.tolist()])
    with torch.no_grad():
        embedding, quality = backbone(images)
    cosine = (
        torch.nn.functional.normalize(embedding.double(), dim=1)
        @ torch.nn.functional.normalize(centers.double(), dim=1).T
    )
    labels = torch.from_numpy(samples.label)
    ccs = cosine.gather(1, labels[:, None])[:, 0]
    others = cosine.scatter(1, labels[:, None], -2.0)
    # float32 products of unit vectors in 16-D: errors of a few 1e-7; 1e-5 leaves room, catches any slip.
    np.testing.assert_allclose(samples.ccs, ccs.numpy(), atol=1e-5)
    np.testing.assert_allclose(samples.nnccs, others.max(1).values.numpy(), atol=1e-5)
    np.testing.assert_array_equal(samples.nearest_class, others.argmax(1).numpy())
    np.testing.assert_allclose(samples.cr, samples.ccs / (samples.nnccs + 1.0 + 1e-9), rtol=1e-6)
    np.testing.assert_allclose(samples.quality, quality.numpy(), atol=1e-6)
    np.testing.assert_array_equal(totals.count, [3, 3, 3, 3, 0])
    assert np.isnan(totals.mean_ccs[4]) and totals.typical_sample[4] == -1
    for cls in range(4):
        rows = samples.label == cls
        assert totals.mean_ccs[cls] == pytest.approx(samples.ccs[rows].mean(), abs=1e-6)
        own = rows & (samples.ccs > samples.nnccs)
        best = samples.index[own][np.argmax(samples.quality[own])] if own.any() else -1
        assert totals.typical_sample[cls] == best


@pytest.mark.parametrize("method", ["exact", "faiss-flat"])
def test_center_neighbours_exact_methods(method):
    centers = torch.randn(300, 24, generator=torch.Generator().manual_seed(1))
    unit = torch.nn.functional.normalize(centers.double(), dim=1)
    cosine = (unit @ unit.T).fill_diagonal_(-2.0)
    found = nearest_centers(centers, method, block=64, progress=False)
    assert found.exact and found.method == method
    np.testing.assert_array_equal(found.nearest_class, cosine.argmax(1).numpy())
    np.testing.assert_allclose(found.cosine, cosine.max(1).values.numpy(), atol=1e-5)


def test_ivf_finds_planted_duplicates():
    generator = torch.Generator().manual_seed(2)
    centers = torch.randn(2000, 32, generator=generator)
    # Ten planted duplicates at cosine ≈ 0.9; random 32-D centers stay below about 0.75 of each other.
    centers[1990:] = centers[:10] + 0.45 * torch.randn(10, 32, generator=generator)
    found = nearest_centers(centers, "faiss-ivf", nprobe=4, progress=False)
    assert not found.exact
    np.testing.assert_array_equal(found.nearest_class[:10], np.arange(1990, 2000))
    assert (found.cosine[:10] > 0.8).all()


def _samples(label, nearest, ccs, nnccs, quality):
    n = len(label)
    return SampleStats(
        np.arange(n),
        np.array(label),
        np.array(ccs, np.float32),
        np.array(nnccs, np.float32),
        np.array(nearest),
        np.zeros(n, np.float32),
        np.array(quality, np.float32),
    )


def test_flag_rules():
    # Centers: 0 and 1 at cosine 0.8; 2 and 3 orthogonal to everything (their nearest: class 0, lowest index).
    centers = torch.tensor([[1.0, 0, 0, 0], [0.8, 0.6, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    neighbors = nearest_centers(centers, "exact", progress=False)
    samples = _samples(
        label=[0, 0, 1, 1, 2, 3],
        nearest=[1, 2, 0, 3, 0, 2],
        ccs=[0.9, 0.2, 0.1, 0.8, 0.7, 0.5],
        nnccs=[0.1, 0.3, 0.6, 0.2, 0.1, 0.55],
        quality=[0.5, 0.1, 0.2, 0.9, 0.8, 0.7],
    )
    settings = FlagSettings(mislabel_margin=0.0, duplicate_share=0.6, duplicate_cosine=0.5, low_quality_fraction=2 / 6)
    flags = compute_flags(samples, neighbors, centers, settings)
    # Candidates: (0, 1) and (0, 2) point at each other through their samples (shares 1/2 both ways: 0.5);
    # (0, 3) through class 3's nearest center. Only (0, 1) passes a threshold (cosine 0.8 >= 0.5).
    assert [
        (p.first, p.second, round(p.share, 6), round(p.cosine, 6), p.flagged, p.supporting, p.supporting_mislabeled)
        for p in flags.pairs
    ] == [(0, 1, 0.5, 0.8, True, 2, 1), (0, 2, 0.5, 0.0, False, 2, 1), (0, 3, 0.0, 0.0, False, 0, 0)]
    np.testing.assert_array_equal(flags.duplicate, [True, False, True, False, False, False])
    np.testing.assert_array_equal(flags.duplicate_class, [True, True, False, False])
    # NNCCS > CCS for samples 1, 2, 5; sample 2 (label 1, nearest 0) supports the flagged pair instead.
    np.testing.assert_array_equal(flags.mislabeled, [False, True, False, False, False, True])
    np.testing.assert_array_equal(flags.low_quality, [False, True, True, False, False, False])
    by_share = compute_flags(samples, neighbors, centers, FlagSettings(duplicate_share=0.5))
    assert [p.flagged for p in by_share.pairs] == [True, True, False]
    np.testing.assert_array_equal(by_share.mislabeled, [False, False, False, False, False, True])
    strict = compute_flags(samples, neighbors, centers, FlagSettings(mislabel_margin=0.15, duplicate_share=0.6))
    assert not strict.mislabeled.any()


def test_command_writes_the_report_with_scores_keys(tmp_path, identities, checkpoint, capsys):
    path, backbone, _ = checkpoint
    out = tmp_path / "report"
    assert main(["curate", path, identities, "--output", str(out), "--no-progress", "--batch-size", "5"]) == 0
    assert "curated 12 samples of 4 classes" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == sorted(REPORT_FILES)
    for picture in ("ccs_vs_nnccs.png", "cr_histogram.png", "suspicious.png"):
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "samples.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    summary = json.loads((out / "summary.json").read_text())
    assert len(rows) == summary["samples"] == 12 and summary["centers"] == {
        "method": "exact",
        "exact": True,
        "description": summary["centers"]["description"],
    }
    flagged = sum("likely_mislabeled" in row["flags"] for row in rows)
    assert flagged == summary["counts"]["likely_mislabeled"]
    assert all(
        (float(row["nnccs"]) > float(row["ccs"]) and "duplicate_identity" not in row["flags"])
        == ("likely_mislabeled" in row["flags"])
        for row in rows
    )
    assert "Rules:" in (out / "report.txt").read_text()
    # The keys are the names `crfiqa score` writes for the same images.
    torch.save(backbone.state_dict(), tmp_path / "backbone.pth")
    assert (
        main(
            ["score", str(tmp_path / "backbone.pth"), identities, "--output", str(tmp_path / "q.txt"), "--no-progress"]
        )
        == 0
    )
    scored = [line.rsplit(" ", 1)[0] for line in (tmp_path / "q.txt").read_text().splitlines()]
    assert sorted(row["key"] for row in rows) == sorted(scored)
    # Running again replaces the earlier report.
    assert (
        main(["curate", path, identities, "--output", str(out), "--no-progress", "--low-quality-fraction", "0.5"]) == 0
    )
    assert json.loads((out / "summary.json").read_text())["counts"]["low_quality"] == 6
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith(".")) == []


def test_list_and_sharded_checkpoints(tmp_path, identities, checkpoint):
    _, backbone, centers = checkpoint
    images = sorted(str(p) for p in (tmp_path / "data").rglob("*.png"))
    (tmp_path / "list.txt").write_text(
        "".join(f"{os.path.relpath(p, tmp_path)} {i % CLASSES}\n" for i, p in enumerate(images))
    )
    dataset = open_labelled_data(str(tmp_path / "list.txt"), 16)
    assert dataset.name(0) == os.path.relpath(images[0], tmp_path) and dataset[1][1] == 1
    run = tmp_path / "run"
    run.mkdir()
    for rank, (start, stop) in enumerate([(0, 3), (3, 5)]):
        torch.save(
            {
                "model_config": backbone.config,
                "backbone": backbone.state_dict(),
                "config": {"cr": "paper"},
                "head": {
                    "weight": centers[start:stop],
                    "_extra_state": {"num_classes": 5, "class_start": start, "num_local": stop - start},
                },
            },
            run / f"checkpoint-rank{rank}.pt",
        )
    model = load_curate_model(str(run / "checkpoint-rank1.pt"))
    torch.testing.assert_close(model.centers, centers)
    (run / "checkpoint-rank0.pt").unlink()
    with pytest.raises(ValueError, match="start at 3, expected 0"):
        load_curate_model(str(run))


def test_bad_input_ends_with_one_line(tmp_path, identities, checkpoint, capsys):
    path, backbone, _ = checkpoint
    out = str(tmp_path / "report")
    torch.save(backbone.state_dict(), tmp_path / "backbone.pth")
    assert main(["curate", str(tmp_path / "backbone.pth"), identities, "--output", out]) == INPUT_ERROR
    assert "backbone.pth holds no class centers" in _error_line(capsys)
    assert main(["curate", str(tmp_path / "nope.pt"), identities, "--output", out]) == INPUT_ERROR
    assert "nope.pt" in _error_line(capsys)
    small, _, _ = _checkpoint(tmp_path / "three.pt", classes=3)
    assert main(["curate", small, identities, "--output", out]) == INPUT_ERROR
    assert f"{identities} has 4 identities but the model's head only 3 classes" in _error_line(capsys)
    (tmp_path / "list.txt").write_text("data/id0/img_00.png 7\n")
    assert main(["curate", path, str(tmp_path / "list.txt"), "--output", out, "--no-progress"]) == INPUT_ERROR
    assert "data/id0/img_00.png has label 7, beyond the model's 5 classes" in _error_line(capsys)
    (tmp_path / "empty" / "id0").mkdir(parents=True)
    assert main(["curate", path, str(tmp_path / "empty"), "--output", out]) == INPUT_ERROR
    assert "no images found" in _error_line(capsys)
    assert main(["curate", path, identities, "--output", out, "--duplicate-cosine", "2"]) == INPUT_ERROR
    assert "--duplicate-cosine" in _error_line(capsys)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert main(["curate", path, identities, "--output", str(tmp_path / "taken")]) == INPUT_ERROR
    assert "not a curate report" in _error_line(capsys)
    assert not os.path.exists(out)


def test_interrupted_run_leaves_no_half_written_report(tmp_path, identities, checkpoint, monkeypatch):
    path, _, _ = checkpoint
    model = load_curate_model(path)
    dataset = open_labelled_data(identities, model.input_size)
    out = tmp_path / "report"
    curate(model, dataset, out, CurateOptions(), progress=False, echo=lambda *_: None)
    before = {name: (out / name).read_bytes() for name in ("samples.csv", "summary.json")}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("crfiqa.curate.run.contact_sheet", interrupted)
    with pytest.raises(KeyboardInterrupt):
        curate(model, dataset, out, CurateOptions(flags=FlagSettings(low_quality_fraction=0.5)), progress=False)
    assert {name: (out / name).read_bytes() for name in before} == before  # the earlier report, untouched
    with pytest.raises(KeyboardInterrupt):
        curate(model, dataset, tmp_path / "fresh", CurateOptions(), progress=False)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt", "data", "report"]  # no partial folders


def test_record_dataset_keys_are_scores_keys(tmp_path, checkpoint, capsys):
    from crfiqa.data import write_record_dataset

    path, backbone, _ = checkpoint
    rng = np.random.default_rng(0)
    write_record_dataset(
        tmp_path / "rec", [(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), i % 4) for i in range(8)]
    )
    rec = str(tmp_path / "rec" / "train.rec")
    assert main(["curate", path, rec, "--output", str(tmp_path / "report"), "--no-progress"]) == 0
    with open(tmp_path / "report" / "samples.csv", newline="") as file:
        keys = [row["key"] for row in csv.DictReader(file)]
    torch.save(backbone.state_dict(), tmp_path / "backbone.pth")
    assert (
        main(["score", str(tmp_path / "backbone.pth"), rec, "--output", str(tmp_path / "q.txt"), "--no-progress"]) == 0
    )
    assert keys == [line.rsplit(" ", 1)[0] for line in (tmp_path / "q.txt").read_text().splitlines()]
    assert keys[0] == "train.rec:1"  # FILE.rec:KEY, as score writes it
