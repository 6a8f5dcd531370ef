"""``crfiqa evaluate`` / ``python -m crfiqa.evaluate`` end to end on a tiny synthetic set."""

import json
import subprocess
import sys

import numpy as np
import pytest

from crfiqa import cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def inputs(tmp_path):
    """60 images of 20 people; image quality sets the embedding noise. The authors' file formats."""
    rng = np.random.default_rng(0)
    people, per_person = 20, 3
    identity = np.repeat(np.arange(people), per_person)
    quality = rng.random(len(identity))
    noise = (1.6 - quality)[:, None] * rng.standard_normal((len(identity), 16))
    np.save(tmp_path / "embeddings.npy", (rng.standard_normal((people, 16))[identity] + noise).astype(np.float32))
    lines = []
    for a in range(len(identity)):
        for b in range(a + 1, len(identity)):
            if identity[a] == identity[b] or (a + b) % 7 == 0:
                lines.append(f"{a:05d} {b:05d} {int(identity[a] == identity[b]):05d}\n")
    (tmp_path / "pair_list.txt").write_text("".join(lines))
    for name, scores in (("good", quality), ("random", rng.random(len(identity)))):
        lines = (f"set/images/{i:05d}.jpg {float(s)!r}\n" for i, s in enumerate(scores))
        (tmp_path / f"{name}_set.txt").write_text("".join(lines))
    np.save(tmp_path / "bad_is_high.npy", -quality)
    return tmp_path


def _data_options(inputs, pairs="pair_list.txt"):
    """``--embeddings`` and ``--pairs`` of the files in ``inputs``."""
    return ["--embeddings", str(inputs / "embeddings.npy"), "--pairs", str(inputs / pairs)]


def test_end_to_end_through_python_m(inputs):
    out = inputs / "out"
    command = [
        sys.executable,
        "-m",
        "crfiqa.evaluate",
        *_data_options(inputs),
        "--quality",
        str(inputs / "good_set.txt"),
        f"rnd={inputs / 'random_set.txt'}",
        "--output-dir",
        str(out),
        "--erc-fmr",
        "1e-2",
        "1e-3",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "EDC, ISO/IEC 29794-1:2024" in done.stdout and "ERC, CR-FIQA paper protocol" in done.stdout
    assert (out / "report.txt").read_text().strip() == done.stdout.strip()
    for png in ("edc.png", "erc_fmr1e-02.png", "erc_fmr1e-03.png"):
        assert (out / png).read_bytes()[:8] == PNG_SIGNATURE
    results = json.loads((out / "evaluation.json").read_text())
    assert set(results["edc"]["methods"]) == {"good_set", "rnd"}
    assert results["edc"]["threshold_rule"] == "FMR = 0.001 over all non-mated comparisons"
    assert [erc["fmr"] for erc in results["erc"]] == [1e-2, 1e-3]
    edc = results["edc"]["methods"]
    # The quality that drives the noise beats random quality on both protocols.
    assert edc["good_set"]["pauc_minus_best"] < edc["rnd"]["pauc_minus_best"]
    assert results["erc"][0]["methods"]["good_set"]["auc"] < results["erc"][0]["methods"]["rnd"]["auc"]
    assert len(results["erc"][0]["methods"]["rnd"]["fnmr"]) == 20


def _run(argv, capsys):
    code = cli.main(["evaluate", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_npz_pairs_npy_quality_names_and_lower_is_better(inputs, capsys):
    pairs = np.loadtxt(inputs / "pair_list.txt", dtype=np.int64)
    np.savez(inputs / "pairs.npz", pairs=pairs[:, :2], mated=pairs[:, 2].astype(bool))
    (inputs / "names.txt").write_text("".join(f"faces/person/{i:05d}.png\n" for i in range(60)))
    code, out, err = _run(
        [
            *_data_options(inputs, pairs="pairs.npz"),
            "--names",
            str(inputs / "names.txt"),
            "--quality",
            f"good={inputs / 'good_set.txt'}",
            f"flipped={inputs / 'bad_is_high.npy'}",
            "--lower-is-better",
            "flipped",
            "--edc-starting-fnmr",
            "0.2",
            "--output-dir",
            str(inputs / "o2"),
        ],
        capsys,
    )
    assert code == 0, err
    results = json.loads((inputs / "o2" / "evaluation.json").read_text())
    good, flipped = results["edc"]["methods"]["good"], results["edc"]["methods"]["flipped"]
    assert good["starting_error"] == pytest.approx(0.2, abs=0.02)
    assert good["error_fractions"] == pytest.approx(flipped["error_fractions"])  # negated −quality = quality
    assert "FNMR = 0.2 over the mated comparisons" in out


@pytest.mark.parametrize("missing", ["embeddings", "pairs", "quality", "names"])
def test_missing_files_are_named(inputs, capsys, missing):
    paths = {
        "embeddings": inputs / "embeddings.npy",
        "pairs": inputs / "pair_list.txt",
        "quality": inputs / "good_set.txt",
        "names": inputs / "names.txt",
    }
    paths[missing] = inputs / f"no_{missing}.txt"
    if missing != "names":
        (inputs / "names.txt").write_text("".join(f"{i:05d}\n" for i in range(60)))
    code, _, err = _run(
        [
            "--embeddings",
            str(paths["embeddings"]),
            "--pairs",
            str(paths["pairs"]),
            "--names",
            str(paths["names"]),
            "--quality",
            str(paths["quality"]),
            "--output-dir",
            str(inputs / "o3"),
        ],
        capsys,
    )
    assert code == 2
    assert "not found" in err and f"no_{missing}.txt" in err
    assert not (inputs / "o3").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: (d / "good_set.txt").write_text("set/images/00000.jpg 0.5\n"), "no finite score for"),
        (lambda d: (d / "pair_list.txt").write_text("00000 00099 1\n"), "not a row number below 60"),
        (lambda d: np.save(d / "embeddings.npy", np.zeros((60, 2, 2))), "2-D float array"),
    ],
)
def test_malformed_inputs_are_one_line_errors(inputs, capsys, change, message):
    change(inputs)
    code, _, err = _run(
        [*_data_options(inputs), "--quality", str(inputs / "good_set.txt"), "--output-dir", str(inputs / "o4")],
        capsys,
    )
    assert code == 2 and message in err and err.count("\n") == 1


def test_duplicate_method_names_and_unknown_lower_is_better(inputs, capsys):
    base = [*_data_options(inputs), "--output-dir", str(inputs / "o5")]
    code, _, err = _run(base + ["--quality", f"a={inputs / 'good_set.txt'}", f"a={inputs / 'random_set.txt'}"], capsys)
    assert code == 2 and "two quality files for method 'a'" in err
    code, _, err = _run(base + ["--quality", str(inputs / "good_set.txt"), "--lower-is-better", "nope"], capsys)
    assert code == 2 and "nope" in err
