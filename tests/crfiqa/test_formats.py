"""The authors' pair_list.txt and 'path score' formats."""

import numpy as np
import pytest

from crfiqa.evaluate import (
    PairList,
    read_pair_list,
    read_quality_scores,
    sample_key,
    write_pair_list,
    write_quality_scores,
)


def test_reads_the_authors_zero_padded_pair_list(tmp_path):
    (tmp_path / "pair_list.txt").write_text("00000 00001 00001\n00002 00003 1\n\n05402 05405 00000\n")
    pairs = read_pair_list(tmp_path / "pair_list.txt")
    assert pairs.first == ("00000", "00002", "05402") and pairs.second == ("00001", "00003", "05405")
    np.testing.assert_array_equal(pairs.mated, [True, True, False])
    assert len(pairs) == 3


@pytest.mark.parametrize("line", ["00000 00001", "00000 00001 2", "a b c d", "00000 00001 1.0"])
def test_bad_pair_line_is_named(tmp_path, line):
    (tmp_path / "pairs.txt").write_text(f"00000 00001 1\n{line}\n")
    with pytest.raises(ValueError, match="pairs.txt:2"):
        read_pair_list(tmp_path / "pairs.txt")


def test_pair_list_round_trip_and_from_issame(tmp_path):
    pairs = PairList.from_issame([True, False])
    assert pairs.first == ("00000", "00002") and pairs.second == ("00001", "00003")
    write_pair_list(tmp_path / "pair_list.txt", pairs)
    again = read_pair_list(tmp_path / "pair_list.txt")
    assert (again.first, again.second) == (pairs.first, pairs.second)
    np.testing.assert_array_equal(again.mated, pairs.mated)


def test_quality_scores_keyed_by_name_as_written(tmp_path):
    (tmp_path / "CRFIQAL_lfw.txt").write_text(
        "quality_data/lfw/images/00000.jpg 0.36241477727890015\n"
        "quality_data/lfw/images/00000.jpg 0.36241477727890015\n"  # listed twice, as in the authors' README
        "quality_data/lfw/images/00001.jpg -1.5e-3\n"
    )
    assert read_quality_scores(tmp_path / "CRFIQAL_lfw.txt") == {
        "quality_data/lfw/images/00000.jpg": 0.36241477727890015,
        "quality_data/lfw/images/00001.jpg": -1.5e-3,
    }
    assert sample_key("quality_data/lfw/images/00001.jpg") == "00001" == sample_key("00001")


@pytest.mark.parametrize(
    "text, message",
    [
        ("a.jpg 0.5\na.jpg 0.7\n", "another score"),
        ("a.jpg\n", "expected 'name score'"),
        ("a.jpg nan\n", "not finite"),
        ("\n", "no scores"),
    ],
)
def test_bad_quality_file(tmp_path, text, message):
    (tmp_path / "q.txt").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_quality_scores(tmp_path / "q.txt")


def test_quality_round_trip_keeps_every_digit(tmp_path):
    scores = np.random.default_rng(0).standard_normal(5)
    paths = [f"images/{i:05d}.jpg" for i in range(5)]
    write_quality_scores(tmp_path / "q.txt", paths, scores)
    read = read_quality_scores(tmp_path / "q.txt")
    assert read == {path: float(s) for path, s in zip(paths, scores, strict=True)}
    assert [p.name for p in tmp_path.iterdir()] == ["q.txt"]  # no temporary file left behind
    with pytest.raises(ValueError, match="one to one"):
        write_quality_scores(tmp_path / "q.txt", paths[:2], scores)
    with pytest.raises(ValueError, match="one line"):
        write_quality_scores(tmp_path / "q.txt", ["a\nb.jpg"], [1.0])
    write_quality_scores(tmp_path / "q.txt", ["my photos/a b.jpg"], [1.0])  # spaces inside a name read back
    assert read_quality_scores(tmp_path / "q.txt") == {"my photos/a b.jpg": 1.0}
