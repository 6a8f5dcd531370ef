"""Markdown table and PNG plot of a run's records, with ratios against peers of the same run.

For each (shape, dtype, mode) group, every implementation gets its median time, peak extra
memory, and where those peers ran in the same group: its speedup over the authors' formulation
(eager and compiled) and over the faiss search (authors' time / its time: > 1 is faster), its
memory as a share of the authors' eager formulation, and its time as a multiple of the GEMM floors
(``floor``: three GEMMs; ``floor4``: the four products of a design without B × C, DESIGN §3.1).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)
from matplotlib.ticker import NullFormatter  # noqa: E402

MIB = 2**20
SPEEDUP_REFERENCES = ("authors_eager", "authors_compiled", "faiss_top2")


def _groups(records: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        if record["mode"] != "scale":
            groups.setdefault((record["shape"], record["dtype"], record["mode"]), []).append(record)
    return groups


def _ok(group: list[dict], name: str) -> dict | None:
    for record in group:
        if record["impl"] == name and record["status"] == "ok":
            return record
    return None


def _ratio_columns(group: list[dict]):
    """The ratio columns this group supports, as (title, function of a record)."""
    columns = []
    for name in SPEEDUP_REFERENCES:
        reference = _ok(group, name)
        if reference is not None:
            columns.append((f"speedup vs {name}", lambda r, ref=reference: f"{ref['median_ms'] / r['median_ms']:.2f}×"))
    authors = _ok(group, "authors_eager")
    if authors is not None and authors["peak_extra_bytes"]:
        columns.append(("memory vs authors_eager", lambda r, ref=authors: _share(r, ref)))
    for name in ("floor", "floor4"):  # the 3-GEMM floor, then the 4-product one (DESIGN §3.1)
        floor = _ok(group, name)
        if floor is not None:
            columns.append((f"time / {name}", lambda r, ref=floor: f"{r['median_ms'] / ref['median_ms']:.2f}×"))
    return columns


def _share(record: dict, reference: dict) -> str:
    if record["peak_extra_bytes"] is None:
        return "n/a"
    return f"{100 * record['peak_extra_bytes'] / reference['peak_extra_bytes']:.1f} %"


def _time(record: dict) -> str:
    return f"{record['median_ms']:,.2f} ({record['q25_ms']:,.2f}–{record['q75_ms']:,.2f})"


def _memory(record: dict) -> str:
    return "n/a" if record["peak_extra_bytes"] is None else f"{record['peak_extra_bytes'] / MIB:,.1f}"


def _header(records: list[dict]) -> list[str]:
    first = records[0]
    commit = (first["commit"] or "unknown")[:12] + (" (uncommitted changes)" if first.get("dirty") else "")
    loads = [record["load_average"] for record in records if record.get("load_average") is not None]
    load = f"; 1-min load average {min(loads):.1f}–{max(loads):.1f}" if loads else ""
    lines = [
        f"Device: {first['device']} — {first['device_name']}; threads: {first['threads']} "
        f"(OMP_WAIT_POLICY {first.get('omp_wait_policy')}){load}; "
        f"torch {first['torch']}, CUDA {first['cuda']}, driver {first['driver']}, triton {first['triton']}",
        f"Commit {commit}, {first['date']}.",
        "",
        "Time: median ms (interquartile range). Memory: peak extra MiB beyond inputs and returned gradients.",
    ]
    return lines


def markdown(records: list[dict]) -> str:
    if not records:
        return "No records.\n"
    lines = _header(records)
    for (shape, dtype, mode), group in _groups(records).items():
        first = group[0]
        lines += [
            "",
            f"### {shape} (B={first['batch']:,}, C={first['classes']:,}, D={first['dim']}) · {dtype} · {mode}",
            "",
        ]
        columns = _ratio_columns(group)
        titles = ["impl", "status", "median ms (IQR)", "peak extra MiB", *(title for title, _ in columns)]
        lines += ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
        for record in group:
            if record["status"] == "ok":
                cells = [_time(record), _memory(record), *(value(record) for _, value in columns)]
                status = "ok"
            else:
                cells = ["—", "—", *("—" for _ in columns)]
                status = f"{record['status']}: {record['message']}".replace("|", "/").replace("\n", " ")
            lines.append("| " + " | ".join([record["impl"], status, *cells]) + " |")
    lines += _scale_table(records)
    return "\n".join(lines) + "\n"


def _scale_table(records: list[dict]) -> list[str]:
    scale = [record for record in records if record["mode"] == "scale"]
    if not scale:
        return []
    lines = [
        "",
        "### Largest C whose training step fits (B=512, D=512, SGD momentum)",
        "",
        "| impl | dtype | status | largest C |",
        "|---|---|---|---|",
    ]
    for record in scale:
        value = f"{record['max_classes']:,}" if record["status"] == "ok" else record["message"]
        lines.append(f"| {record['impl']} | {record['dtype']} | {record['status']} | {value} |")
    return lines


def _short(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def plot(records: list[dict], path: Path) -> bool:
    """One row per group: median time and peak extra memory per implementation (log scale).

    Returns False (and writes nothing) when there is nothing to plot (a scale-only run).
    """
    groups = _groups(records)
    if not groups:
        return False
    figure, axes = plt.subplots(
        len(groups), 2, figsize=(12, 1.2 + 0.45 * max(map(len, groups.values())) * len(groups)), squeeze=False
    )
    for row, ((shape, dtype, mode), group) in enumerate(groups.items()):
        names = [record["impl"] for record in group]
        for column, (key, scale, label) in enumerate(
            (("median_ms", 1.0, "median ms"), ("peak_extra_bytes", 1 / MIB, "peak extra MiB"))
        ):
            axis = axes[row][column]
            values = [record[key] * scale if record["status"] == "ok" and record[key] else 0.0 for record in group]
            axis.barh(names, values, color=["tab:blue" if value else "lightgray" for value in values])
            for position, (record, value) in enumerate(zip(group, values, strict=True)):
                if record["status"] != "ok":  # x in axes coordinates: visible whatever the scale
                    axis.text(
                        0.01,
                        position,
                        record["status"],
                        transform=axis.get_yaxis_transform(),
                        va="center",
                        fontsize=8,
                        color="tab:red",
                    )
                elif value:
                    axis.text(value, position, " " + _short(value), va="center", fontsize=8)
                else:
                    axis.text(
                        0.01,
                        position,
                        "not measured",
                        transform=axis.get_yaxis_transform(),
                        va="center",
                        fontsize=8,
                        color="gray",
                    )
            positive = [value for value in values if value]
            if positive and max(positive) > 20 * min(positive):  # a log scale only where it is needed
                axis.set_xscale("log")
                axis.xaxis.set_minor_formatter(NullFormatter())
            axis.invert_yaxis()
            axis.set_xlabel(label)
            axis.set_title(f"{shape} · {dtype} · {mode}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def write_report(records: list[dict], directory: Path, name: str) -> list[Path]:
    """Write ``name.md`` and, when there is something to plot, ``name.png``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    table_path, plot_path = directory / f"{name}.md", directory / f"{name}.png"
    table_path.write_text(f"# Benchmark `{name}`\n\n" + markdown(records), encoding="utf-8")
    return [table_path, plot_path] if plot(records, plot_path) else [table_path]
