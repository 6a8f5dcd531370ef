"""The modeled roofline (bench/model.py): its arithmetic checked by hand at shape L, its labels."""

from __future__ import annotations

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
    # Backward: 3 GEMM-equivalents; W read + dW written (2 · 175,599,616), the dℓ/dc scratch written once
    # and read back once per 64-column chunk of dW in bf16 ((1 + 8) · 512 · 85,742 · 2 = 790,198,272),
    # E read (bf16) and dE written (fp32): 1,572,864.
    assert backward.flops == 3 * GEMM_FLOPS
    assert backward.hbm_bytes == 351_199_232 + 790_198_272 + 1_572_864
    assert backward.seconds == pytest.approx(1_142_970_368 / BANDWIDTH)  # 381.0 µs vs 170.7 µs of FLOPs
    # L2, not timed: dE atomics B·D·4 and E re-reads B·D·2 per class tile of 64 (1,340 tiles).
    assert backward.l2_bytes == 1_340 * 512 * 512 * 6

    floor = model.model(model.FLOOR3, "L")
    per_gemm = 512 * 512 * 2 + 85_742 * 512 * 2 + 512 * 85_742 * 2  # 176,123,904 B: 58.7 µs > 56.9 µs
    assert [launch.hbm_bytes for launch in floor.launches] == [per_gemm] * 3
    assert floor.seconds == pytest.approx(3 * per_gemm / BANDWIDTH)
    floor4 = model.model(model.FLOOR4, "L")
    assert floor4.seconds == pytest.approx(4 / 3 * floor.seconds)
    assert ours.seconds / floor.seconds == pytest.approx((192_901_120 + 1_142_970_368) / (3 * per_gemm))


def test_compute_bound_shape_follows_the_flops():
    # Shard: B = 4,096 makes every launch compute bound once the scratch stays in L2; ours is then
    # exactly 4/3 of the floor.
    ours = model.model(model.OURS, "Shard", params=model.Params(scratch_in_l2=True))
    floor = model.model(model.FLOOR3, "Shard")
    assert {launch.bound for launch in ours.launches + floor.launches} == {"compute"}
    assert ours.seconds == pytest.approx(4 * 2 * 4_096 * 257_489 * 512 / PEAK)
    assert ours.seconds / floor.seconds == pytest.approx(4 / 3)


def test_scratch_in_l2_and_l2_rate_are_parameters():
    in_hbm = model.model(model.OURS, "XL")
    in_l2 = model.model(model.OURS, "XL", params=model.Params(scratch_in_l2=True))
    scratch = (1 + 512 // 64) * 512 * 2_059_906 * 2
    assert in_hbm.hbm_bytes - in_l2.hbm_bytes == scratch
    assert in_l2.l2_bytes - in_hbm.l2_bytes == scratch
    slow_l2 = model.model(model.OURS, "XL", machine=model.Machine(l2_bytes_per_s=1e12))
    assert slow_l2.launches[1].bound == "L2" and slow_l2.seconds > in_hbm.seconds
    # Wider class tiles: a quarter of the dE atomics and E re-reads at block_c = 256.
    wide = model.model(model.OURS, "XL", params=model.Params(block_c=256))
    assert wide.l2_bytes == pytest.approx(in_hbm.l2_bytes / 4, rel=1e-4)


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
