"""bench.demo_seeds: one record per seed with the demo's figures, and a table that gives their range."""

import json

from bench import demo_seeds


def test_records_and_table_of_two_short_seeds(tmp_path):
    output = tmp_path / "demo-seeds"
    assert demo_seeds.main(["--seeds", "0", "1", "--max-steps", "3", "--threads", "1", "--output", str(output)]) == 0

    records = json.loads(output.with_suffix(".json").read_text())
    assert [record["seed"] for record in records] == [0, 1]
    for record in records:
        assert record["status"] == "ok" and record["steps"] == 3
        assert -1.0 <= record["spearman"] <= 1.0
        assert 0.0 <= record["fnmr_at_discard_limit"][demo_seeds.QUALITY] <= 1.0
        assert record["device_name"] and record["torch"] and record["date"]
    table = output.with_suffix(".md").read_text()
    assert table.count("\n| 0 |") == 1 and table.count("\n| 1 |") == 1
    low, high = sorted(record["spearman"] for record in records)
    assert f"ρ {low:.3f}" in table and (f"to {high:.3f}" in table or f"{low:.3f}" == f"{high:.3f}")
