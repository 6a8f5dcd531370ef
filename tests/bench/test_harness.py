"""Fast tests of the benchmark harness at the tiny shape: every implementation against the float64
oracle, the records, failures recorded rather than dropped, the memory measurement, the report."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from bench.__main__ import main
from bench.impls import Implementation, Setting, Unavailable, get_implementation
from bench.memory import peak_extra_bytes
from bench.problems import get_dtype, make_problems
from bench.records import REQUIRED_KEYS, environment, read_json
from bench.report import markdown, write_report
from bench.runner import MARGIN, RunConfig, run_all
from bench.scale import largest_classes, largest_fitting, run_scale, training_step_fits
from bench.shapes import get_shape
from crfiqa_kernels.reference import cosine_matrix, margin_ccs_loss_reference

from ..flags import torch_flags

CPU = torch.device("cpu")
TINY = get_shape("tiny")
FP32 = get_dtype("fp32")
NO_FAISS = pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="faiss is not installed (optional)")
CPU_LOSSES = (
    "authors_eager",
    pytest.param("authors_compiled", marks=pytest.mark.slow),  # torch.compile builds C++ (30 s)
    "linear_cross_entropy",
    "linear_cross_entropy_chunked",
    "arcface_torch",
    "chunked",
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny steps are dominated by thread synchronization, which a busy machine makes erratic."""
    with torch_flags(threads=1):
        yield


@pytest.fixture(scope="module")
def problems():
    return make_problems(TINY, FP32, CPU, count=1, seed=7)


def _setting(problems, mode, dtype=FP32):
    return Setting(CPU, dtype, mode, MARGIN, problems)


def _error(value, oracle):
    return (value.double() - oracle).abs().max().item()


@pytest.mark.parametrize("name", CPU_LOSSES)
def test_loss_and_gradients_match_the_float64_oracle(problems, name):
    impl = get_implementation(name)
    problem = problems[0]
    try:
        step = impl.prepare(_setting(problems, "fwd_bwd"))
    except Unavailable as missing:  # a peer this torch lacks (F.linear_cross_entropy before 2.13)
        pytest.skip(str(missing))
    loss, d_emb, d_weight, *stats = step(problem)

    semantics = impl.semantics
    margin = semantics.oracle_margin(MARGIN)

    def oracle(emb, weight):
        out = margin_ccs_loss_reference(
            emb, weight, problem.labels, margin, margin_grad=semantics.margin_grad, reduction="none"
        )
        value = out.loss.detach().clamp(max=semantics.row_loss_cap).mean()  # the cap changes values only
        return out, value, torch.autograd.grad(out.loss.mean(), (emb, weight))

    expected, expected_loss, expected_grads = oracle(
        problem.embeddings.detach().double().requires_grad_(True),
        problem.weight.detach().double().requires_grad_(True),
    )
    _, same_dtype_loss, same_dtype_grads = oracle(
        problem.embeddings.detach().clone().requires_grad_(True),
        problem.weight.detach().clone().requires_grad_(True),
    )

    assert _error(loss, expected_loss) <= _error(same_dtype_loss, expected_loss) + 1e-4
    for value, reference, oracle_value in zip((d_emb, d_weight), same_dtype_grads, expected_grads, strict=True):
        assert value.shape == oracle_value.shape
        tolerance = 1e-4 * oracle_value.abs().max().item()
        assert _error(value, oracle_value) <= _error(reference, oracle_value) + tolerance
    if semantics.stats:
        ccs, nnccs = stats[0], stats[1]
        assert _error(ccs, expected.ccs) <= 1e-5
        assert _error(nnccs, expected.nnccs) <= 1e-5


def test_floor_computes_the_three_products(problems):
    problem = problems[0]
    d_emb, d_weight = get_implementation("floor").prepare(_setting(problems, "fwd_bwd"))(problem)
    emb, weight = problem.embeddings.detach().double(), problem.weight.detach().double()
    products = emb @ weight.T
    assert _error(d_emb, products @ weight) <= 1e-4
    assert _error(d_weight, products.T @ emb) <= 1e-4


def test_floor4_computes_the_four_products_and_only_in_fwd_bwd(problems):
    problem = problems[0]
    impl = get_implementation("floor4")
    assert impl.modes == ("fwd_bwd",) and impl.kind == "floor"
    calls = []
    original = torch.mm

    def counting_mm(a, b):
        calls.append((tuple(a.shape), tuple(b.shape)))
        return original(a, b)

    step = impl.prepare(_setting(problems, "fwd_bwd"))
    torch.mm = counting_mm
    try:
        d_emb, d_weight = step(problem)
    finally:
        torch.mm = original
    batch, classes, dim = TINY.batch, TINY.classes, TINY.dim
    # E·Wᵀ, the recompute E·Wᵀ, G·W, Gᵀ·E: four products of B·C·D multiply-adds each.
    assert calls == [((batch, dim), (dim, classes))] * 2 + [
        ((batch, classes), (classes, dim)),
        ((classes, batch), (batch, dim)),
    ]
    emb, weight = problem.embeddings.detach().double(), problem.weight.detach().double()
    products = emb @ weight.T
    assert _error(d_emb, products @ weight) <= 1e-4
    assert _error(d_weight, products.T @ emb) <= 1e-4


def test_every_loss_preset_times_both_floors():
    from bench.impls import IMPLEMENTATIONS
    from bench.presets import PRESETS

    for name, preset in PRESETS.items():
        impls = list(IMPLEMENTATIONS) if preset["impls"] == "all" else preset["impls"].split(",")
        if "fwd_bwd" in preset.get("modes", "") and any(get_implementation(i).kind == "loss" for i in impls):
            assert {"floor", "floor4"} <= set(impls), name


@pytest.mark.parametrize("name", ("class_stats", pytest.param("faiss_top2", marks=NO_FAISS)))
def test_searches_find_the_two_nearest_class_centers(problems, name):
    problem = problems[0]
    output = get_implementation(name).prepare(_setting(problems, "fwd"))(problem)
    if name == "class_stats":
        first, second = output[3], output[2]  # top_class, then nn_index: the runner-up
    else:
        first, second = (torch.as_tensor(column) for column in output[1].T)  # faiss: (scores, ids)
    cosines = cosine_matrix(problem.embeddings.detach().double(), problem.weight.detach().double())
    expected = cosines.topk(2, dim=1).indices
    assert torch.equal(first.long(), expected[:, 0])
    assert torch.equal(second.long(), expected[:, 1])


def test_gpu_only_peers_are_unavailable_on_cpu_with_a_reason(problems):
    for name in ("liger", "cut_cross_entropy", "cuda"):
        with pytest.raises(Unavailable, match=r"not installed|CUDA|cuda"):
            get_implementation(name).prepare(_setting(problems, "fwd"))


def test_peak_extra_memory_on_cpu_counts_transients_not_returned_tensors():
    def step(_):
        transient = torch.ones(1_000_000)  # 4 MB, freed before returning
        kept = torch.ones(250_000)  # 1 MB, returned (like a gradient)
        del transient
        return (kept,)

    peak, outputs = peak_extra_bytes(step, None, CPU)
    # Both tensors live at once (5 MB); the returned 1 MB is not extra.
    assert peak == 4_000_000
    assert outputs[0].numel() == 250_000


def _raises(error):
    def prepare(setting):
        raise error

    return prepare


BROKEN = Implementation("broken", "loss", "raises while preparing", _raises(RuntimeError("boom")))
TOO_BIG = Implementation(
    "too_big",
    "loss",
    "runs out of memory",
    _raises(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 TB")),
)


@pytest.fixture(scope="module")
def records():
    impls = [get_implementation(name) for name in ("authors_eager", "chunked", "floor", "liger")] + [BROKEN, TOO_BIG]
    config = RunConfig(CPU, warmup=0, repeats=2, rotate=2)
    return run_all(impls, [TINY], [FP32, get_dtype("bf16")], ["fwd_bwd"], config, log=None)


def test_every_case_gets_a_record_with_the_required_keys(records):
    assert len(records) == 6 * 2
    for record in records:
        assert set(REQUIRED_KEYS) <= set(record)
        assert {"driver", "cuda", "torch", "triton", "cpu", "threads", "status", "message"} <= set(record)
        assert record["device"] == "cpu" and record["shape"] == "tiny" and record["mode"] == "fwd_bwd"
    json.dumps(records)  # serializable as they are


def test_failing_peers_are_recorded_not_dropped(records):
    status = {(record["impl"], record["dtype"]): record for record in records}
    for dtype in ("fp32", "bf16"):
        assert status[("broken", dtype)]["status"] == "error"
        assert "boom" in status[("broken", dtype)]["message"]
        assert status[("too_big", dtype)]["status"] == "oom"
        assert status[("liger", dtype)]["status"] == "unavailable"
        assert "not installed" in status[("liger", dtype)]["message"]
        for name in ("authors_eager", "chunked", "floor"):
            record = status[(name, dtype)]
            assert record["status"] == "ok", record["message"]
            assert record["median_ms"] > 0 and record["peak_extra_bytes"] >= 0
        assert status[("chunked", dtype)]["loss"] == pytest.approx(status[("authors_eager", dtype)]["loss"], rel=2e-2)


def test_report_renders_table_ratios_and_plot(records, tmp_path):
    table = markdown(records)
    assert "### tiny (B=37, C=1,031, D=48) · fp32 · fwd_bwd" in table
    assert "speedup vs authors_eager" in table and "memory vs authors_eager" in table and "time / floor" in table
    assert "| liger | unavailable: not installed" in table
    paths = write_report(records, tmp_path, "tiny")
    assert [path.name for path in paths] == ["tiny.md", "tiny.png"]
    assert paths[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_command_line_writes_json_markdown_and_plot(tmp_path, capsys):
    argv = [
        "--device",
        "cpu",
        "--shapes",
        "tiny",
        "--modes",
        "fwd",
        "--impls",
        "chunked,cut_cross_entropy",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--out",
        str(tmp_path),
        "--name",
        "cli",
    ]
    assert main(argv) == 0
    saved = read_json(tmp_path / "cli.json")
    assert [(record["impl"], record["status"]) for record in saved] == [
        ("chunked", "ok"),
        ("cut_cross_entropy", "unavailable"),
    ]
    assert (tmp_path / "cli.md").exists() and (tmp_path / "cli.png").exists()
    assert "| chunked | ok |" in capsys.readouterr().out


@pytest.mark.parametrize("argv", (["--device", "cuda"], ["--preset", "gpu-scale"], ["--impls", "nope"]))
def test_command_line_refuses_what_cannot_run(monkeypatch, capsys, argv):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "cuda" in capsys.readouterr().err.lower() or "nope" in argv


def test_scale_bisection_finds_the_largest_fitting_size():
    assert largest_fitting(lambda classes: classes <= 12_345, 1_000, 10**7, resolution=1) == 12_345
    found = largest_fitting(lambda classes: classes <= 3_000_000, 1_000, 10**7, resolution=10_000)
    assert 3_000_000 - 10_000 <= found <= 3_000_000
    assert largest_fitting(lambda classes: False, 1_000, 10**7, resolution=1) == 999


@pytest.mark.parametrize("name", ("authors_eager", "chunked"))
def test_scale_training_step_runs_and_the_search_needs_a_gpu(name):
    impl = get_implementation(name)
    config = RunConfig(CPU, warmup=0, repeats=1)
    assert training_step_fits(impl, 1_500, FP32, config)
    with pytest.raises(ValueError, match="cuda"):
        largest_classes(impl, FP32, config)


def test_scale_records_a_failed_search_and_renders_it():
    records = run_scale([get_implementation("chunked")], [FP32], RunConfig(CPU, warmup=0, repeats=1), environment(CPU))
    assert [(record["mode"], record["status"], record["max_classes"]) for record in records] == [
        ("scale", "error", None)
    ]
    assert "needs --device cuda" in records[0]["message"]
    assert "| chunked | fp32 | error |" in markdown(records)


@NO_FAISS
def test_search_recall_report(tmp_path):
    from bench import search_recall

    search_recall.main(
        [
            "--classes",
            "3000",
            "--dim",
            "16",
            "--queries",
            "60",
            "--nprobe",
            "1",
            "1000",
            "--out",
            str(tmp_path),
            "--name",
            "recall",
        ]
    )
    result = json.loads((tmp_path / "recall.json").read_text())
    first, every_cell = result["rows"]
    assert every_cell["nprobe"] == result["nlist"] and every_cell["recall_at_10"] == 1.0
    assert every_cell["rank1"] == result["exact_rank1"]
    assert 0.0 <= first["recall_at_10"] <= every_cell["recall_at_10"]
    assert "| exact (flat) | 1.000 |" in (tmp_path / "recall.md").read_text()


def test_profile_step_reports_the_matrix_product_share(capsys):
    from bench import profile_step

    with torch_flags():  # --threads sets torch's thread count
        profile_step.main(["--shape", "tiny", "--threads", "1", "--rows", "5"])
    assert "in matrix products" in capsys.readouterr().out.splitlines()[-1]
