"""The modeled roofline (bench/model.py): its arithmetic checked by hand at shape L, its labels."""

from __future__ import annotations

import dataclasses

import pytest

from bench import model

# Shape L: B = 512, C = 85,742, D = 512; bf16 compute (2 bytes), fp32 master weights (4 bytes).
GEMM_FLOPS = 2 * 512 * 85_742 * 512  # 44,953,501,696
PEAK, BANDWIDTH = 790e12, 3.0e12


def test_model_arithmetic_at_shape_l_by_hand():
    ours = model.model(model.OURS, "L")
    forward, backward = ours.launches
    # Forward: 1 GEMM-equivalent; W fp32 read once (85,742·512·4 = 175,599,616 B) plus E (512·512·2)
    # once per class split: 264 programs / 8 batch tiles of 64 rows = 33 splits → 17,301,504 B.
    assert forward.flops == GEMM_FLOPS
    assert forward.hbm_bytes == 175_599_616 + 17_301_504
    # 192,901,120 B / 3 TB/s = 64.30 µs > 44.95 GFLOP / 790 TFLOP/s = 56.90 µs: memory bound.
    assert forward.bound == "memory"
    assert forward.seconds == pytest.approx(192_901_120 / BANDWIDTH)
    # Backward: 3 GEMM-equivalents. 132 programs × 512 rows × 64 classes × 2 B = 8.25 MiB of scratch,
    # within half of the 50 MiB L2: one row pass. HBM: W read + dW written (2 · 175,599,616), E read
    # (bf16) and dE written (fp32): 1,572,864 — 117.6 µs < 170.7 µs of FLOPs: compute bound.
    assert backward.flops == 3 * GEMM_FLOPS
    assert backward.hbm_bytes == 351_199_232 + 1_572_864
    assert backward.bound == "compute"
    assert backward.seconds == pytest.approx(3 * GEMM_FLOPS / PEAK)
    # L2, not timed: the scratch written once and read once per 64-column chunk of dW
    # ((1 + 8) · 512 · 85,742 · 2 = 790,198,272), dE atomics B·D·4 and two E re-reads B·D·2 per class
    # tile of 64 (1,340 tiles), the W tile (fp32) read twice per batch tile of 64 rows but once from HBM.
    assert backward.l2_bytes == 790_198_272 + 1_340 * 512 * 512 * 8 + (2 * 8 - 1) * 175_599_616
    assert forward.l2_bytes == (8 - 1) * 175_599_616  # W tiles, once per forward batch tile but the first

    floor = model.model(model.FLOOR3, "L")
    per_gemm = 512 * 512 * 2 + 85_742 * 512 * 2 + 512 * 85_742 * 2  # 176,123,904 B: 58.7 µs > 56.9 µs
    assert [launch.hbm_bytes for launch in floor.launches] == [per_gemm] * 3
    assert floor.seconds == pytest.approx(3 * per_gemm / BANDWIDTH)
    floor4 = model.model(model.FLOOR4, "L")
    assert floor4.seconds == pytest.approx(4 / 3 * floor.seconds)
    assert ours.seconds / floor.seconds == pytest.approx(
        (192_901_120 / BANDWIDTH + 3 * GEMM_FLOPS / PEAK) / (3 * per_gemm / BANDWIDTH)
    )
    assert ours.seconds / floor.seconds <= 1.45  # the design's modeled aim


def test_shard_batch_runs_in_row_passes_and_stays_compute_bound():
    # Shard: B = 4,096. The whole batch's scratch (132 · 4,096 · 64 · 2 = 66 MiB) outgrows half the
    # L2, so the backward runs in passes of 1,536 rows (⌊26,214,400 / 16,896⌋ = 1,551, down to a
    # multiple of 64): 3 passes, each reading W (fp32) again; dW is written by the first and read and
    # written by the two others: 8 · C·D·4 bytes in all, 1.4 ms < 4.1 ms of FLOPs.
    ours = model.model(model.OURS, "Shard")
    backward = ours.launches[1]
    assert backward.hbm_bytes == 8 * 257_489 * 512 * 4 + 4_096 * 512 * 6
    floor = model.model(model.FLOOR3, "Shard")
    assert {launch.bound for launch in ours.launches + floor.launches} == {"compute"}
    assert ours.seconds == pytest.approx(4 * 2 * 4_096 * 257_489 * 512 / PEAK)
    assert ours.seconds / floor.seconds == pytest.approx(4 / 3)


def test_scratch_residency_block_c_and_l2_rate_are_parameters():
    in_l2 = model.model(model.OURS, "XL")
    in_hbm = model.model(model.OURS, "XL", params=model.Params(scratch_in_l2=False))
    scratch = (1 + 512 // 64) * 512 * 2_059_906 * 2
    assert in_hbm.hbm_bytes - in_l2.hbm_bytes == scratch
    assert in_l2.l2_bytes - in_hbm.l2_bytes == scratch
    slow_l2 = model.model(model.OURS, "XL", machine=model.Machine(l2_bytes_per_s=1e12))
    assert slow_l2.launches[1].bound == "L2" and slow_l2.seconds > in_l2.seconds
    # Wider class tiles: a quarter of the dE atomics and E re-reads at block_c = 256 (the scratch and
    # the W re-reads do not depend on it; the scratch is then 4× wider: XL's 512 rows take 2 passes).
    wide_tiles = dataclasses.replace(model.Params().backward, block_c=256)
    wide = model.model(model.OURS, "XL", params=model.Params(backward=wide_tiles))
    w_rereads = (2 * 8 - 1) * 2_059_906 * 512 * 4
    per_class_tile = in_l2.launches[1].l2_bytes - scratch - w_rereads
    assert wide.launches[1].l2_bytes - scratch - (w_rereads - 2_059_906 * 512 * 4) == pytest.approx(
        per_class_tile / 4, rel=1e-4
    )


def test_report_is_labelled_modeled_everywhere(tmp_path, capsys):
    out = tmp_path / "model.md"
    assert model.main(["--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Modeled roofline")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 4 * len(model.KERNELS)  # header + every implementation at S, L, XL, Shard
    assert all("modeled" in row for row in rows)
    assert "— modeled." in text.splitlines()[-1]
    assert "Wrote" in capsys.readouterr().out


def test_command_line_refuses_bad_rates(capsys):
    with pytest.raises(SystemExit) as caught:
        model.main(["--bandwidth", "-1"])
    assert caught.value.code == 2
    assert "must be positive" in capsys.readouterr().err
