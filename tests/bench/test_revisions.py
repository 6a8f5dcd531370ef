"""``python -m bench.revisions``: the case timed at two revisions, interleaved, into one record."""

import json

import pytest

from bench import revisions


@pytest.mark.slow
def test_both_revisions_are_timed_in_each_round(tmp_path, capsys):
    assert revisions.main(["HEAD", "--shape", "tiny", "--rounds", "2", "--repeats", "1", "--out", str(tmp_path)]) == 0
    records = json.loads((tmp_path / "revisions.json").read_text())
    assert [r["revision"] == "HEAD" for r in records] == [True, False, True, False]
    assert all(r["status"] == "ok" and r["median_ms"] > 0 for r in records)
    table = (tmp_path / "revisions.md").read_text()
    assert table.count("\n| 1 |") == 1 and table.count("\n| 2 |") == 1 and "Median of the rounds" in table
    assert table in capsys.readouterr().out
