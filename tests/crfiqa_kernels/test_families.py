"""The margin families against their reference formulas (``family_references``, written from the
papers and official heads): every backend's loss, CCS, NNCCS, nn_index, dE, dW, the gradient
through the norms and the running state, by the rule of :mod:`.oracle`; plus hand-worked values of
``prepare`` and the constructor checks.

ElasticFace draws from the default generator: ``torch.manual_seed`` before the op and before the
reference's draws makes both see the same margins.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from crfiqa_kernels import AdaFace, CurricularFace, ElasticFace, MagFace, MarginCCSHead, margin_ccs_loss
from crfiqa_kernels.backends import chunked

from . import family_references as refs
from .oracle import DTYPES, assert_nn_index_attains, assert_within_bound, backends_on, make_problem

BACKENDS = ["reference", *backends_on("cpu")]
SEED = 1234
CHUNK = 13


@pytest.fixture(autouse=True)
def small_tiles(monkeypatch):
    """Tiles of 13 classes, so that every shape spans several tiles with a ragged last one."""
    monkeypatch.setattr(chunked, "tile_ranges", lambda c, b: ((s, min(s + CHUNK, c)) for s in range(0, c, CHUNK)))


# name -> (family class, hyperparameters, running state before the call, reference formula).
# std 0.1 (not 0.0125) so that ElasticFace+'s pairing moves the margins visibly; AdaFace's and
# CurricularFace's states are mid-training values, exactly representable in float32.
CASES = {
    "elasticface-arc": (ElasticFace, {"s": 64.0, "m": 0.5, "std": 0.1, "kind": "arc", "plus": False}, {}),
    "elasticface-arc-plus": (ElasticFace, {"s": 64.0, "m": 0.5, "std": 0.1, "kind": "arc", "plus": True}, {}),
    "elasticface-cos-plus": (ElasticFace, {"s": 64.0, "m": 0.35, "std": 0.1, "kind": "cos", "plus": True}, {}),
    "adaface": (AdaFace, {"s": 64.0, "m": 0.4, "h": 0.333, "t_alpha": 0.5}, {"batch_mean": 40.0, "batch_std": 24.0}),
    "magface": (MagFace, {}, {}),
    "magface-hard-margin": (MagFace, {"easy_margin": False, "u_margin": 1.4}, {}),
    "curricularface": (CurricularFace, {"s": 64.0, "m": 0.5}, {"t": 0.25}),
}
MAGFACE_DEFAULTS = {
    "s": 64.0,
    "l_a": 10.0,
    "u_a": 110.0,
    "l_margin": 0.45,
    "u_margin": 0.8,
    "lambda_g": 35.0,
    "easy_margin": True,
}


def build_family(case: str):
    cls, params, state = CASES[case]
    family = cls(**params)
    for name, value in state.items():
        getattr(family, name).fill_(value)
    return family


def reference(case: str, embeddings, weight, labels) -> refs.Reference:
    cls, params, state = CASES[case]
    if cls is ElasticFace:
        draws = refs.elastic_draws(SEED, params["m"], params["std"], labels)
        return refs.elasticface(
            embeddings, weight, labels, s=params["s"], kind=params["kind"], plus=params["plus"], draws=draws
        )
    if cls is AdaFace:
        return refs.adaface(embeddings, weight, labels, **params, **state)
    if cls is MagFace:
        return refs.magface(embeddings, weight, labels, **{**MAGFACE_DEFAULTS, **params})
    return refs.curricularface(embeddings, weight, labels, **params, **state)


def family_problem(batch, classes, dim, *, dtype, seed, ignored=()):
    """A random problem whose embedding norms spread over [6, 115] (MagFace's [l_a, u_a] and
    beyond, AdaFace's scaler over its range)."""
    problem = make_problem(batch, classes, dim, dtype=dtype, seed=seed, ignored=ignored)
    norms = torch.linspace(6.0, 115.0, batch)[torch.randperm(batch, generator=torch.Generator().manual_seed(seed))]
    embeddings = F.normalize(problem.embeddings.double(), dim=1) * norms.double().unsqueeze(1)
    problem.embeddings = embeddings.to(dtype)
    return problem


def _results(loss, ccs, nnccs, nn_index, embeddings, weight, state) -> dict:
    loss.backward()
    e_hat = F.normalize(embeddings.detach().double(), dim=1)
    return {
        "loss": loss.detach().reshape(()),
        "ccs": ccs,
        "nnccs": nnccs,
        "nn_index": nn_index,
        "grad_embeddings": embeddings.grad,
        "grad_weight": weight.grad,
        # ∂L/∂‖E_i‖: the radial part of dE, nonzero only through a margin of the norm (MagFace).
        "grad_norms": (embeddings.grad.double() * e_hat).sum(dim=1),
        "state": {name: float(value) for name, value in state.items()},
    }


def _leaves(problem, to):
    embeddings = problem.embeddings.detach().to(to or problem.embeddings.dtype).requires_grad_()
    weight = problem.weight.detach().to(to or problem.weight.dtype).requires_grad_()
    return embeddings, weight


def run_family(case: str, problem, backend: str) -> dict:
    """The op with a fresh family in its starting state (mean loss, backward of it)."""
    family = build_family(case)
    embeddings, weight = _leaves(problem, None)
    torch.manual_seed(SEED)
    out = margin_ccs_loss(embeddings, weight, problem.labels, family, backend=backend)
    state = {name: buffer for name, buffer in family.named_buffers()}
    return _results(out.loss, out.ccs, out.nnccs, out.nn_index, embeddings, weight, state)


def run_reference(case: str, problem, to=None) -> dict:
    embeddings, weight = _leaves(problem, to)
    ref = reference(case, embeddings, weight, problem.labels)
    return _results(ref.loss, ref.ccs, ref.nnccs, ref.nn_index, embeddings, weight, ref.state)


COMPARED = ("loss", "ccs", "nnccs", "grad_embeddings", "grad_weight")
# The gradient through the norms, compared where a margin depends on them (elsewhere it is the
# rounding noise of dE's radial part), in float32 and float16: in bfloat16, at D = 96, the radial
# part (~1e-2 here) is below the rounding noise of dE's components summed over D.
NORM_FAMILIES = ("magface", "magface-hard-margin")


def assert_family_matches(case: str, problem, backend: str) -> dict:
    """The op against the float64 formula, each output within the same-dtype formula's error +
    tolerance; the running state within the dtype's tolerance. Returns the largest errors."""
    dtype = problem.embeddings.dtype
    impl = run_family(case, problem, backend)
    same_dtype = run_reference(case, problem)
    oracle = run_reference(case, problem, to=torch.float64)
    errors = {}
    norm_grads = case in NORM_FAMILIES and dtype != torch.bfloat16
    for key in COMPARED + (("grad_norms",) if norm_grads else ()):
        assert impl[key].shape == oracle[key].shape, key
        assert_within_bound(f"{case} {backend} {key}", impl[key], same_dtype[key], oracle[key], dtype)
        diff = (impl[key].double() - oracle[key].double())[~torch.isnan(oracle[key])].abs()
        errors[key] = float(diff.max()) if diff.numel() else 0.0
    assert_nn_index_attains(impl["nn_index"], impl["nnccs"], problem, dtype)
    for name, value in oracle["state"].items():
        as_tensor = {key: torch.tensor([run["state"][name]]) for key, run in (("impl", impl), ("same", same_dtype))}
        assert_within_bound(
            f"{case} {backend} {name}", as_tensor["impl"], as_tensor["same"], torch.tensor([value]), dtype
        )
    return errors


def _ignored(batch):
    return () if batch < 3 else (1, batch - 1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES)
def test_family_matches_reference(case, backend):
    problem = family_problem(11, 130, 33, dtype=torch.float32, seed=5, ignored=_ignored(11))
    assert_family_matches(case, problem, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["elasticface-arc-plus", "adaface", "magface", "curricularface"])
def test_one_row(case, backend):
    problem = family_problem(1, 2, 3, dtype=torch.float32, seed=2)
    assert_family_matches(case, problem, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES[1:], ids=str)
@pytest.mark.parametrize("case", ["elasticface-arc-plus", "adaface", "magface", "curricularface"])
def test_half_precision(case, dtype, backend):
    problem = family_problem(7, 45, 19, dtype=dtype, seed=9, ignored=(3,))
    assert_family_matches(case, problem, backend)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES)
def test_larger_problem(case, dtype, backend):
    problem = family_problem(33, 1000, 96, dtype=dtype, seed=17, ignored=(0, 20))
    assert_family_matches(case, problem, backend)


@pytest.mark.parametrize("case", CASES)
def test_every_row_ignored(case):
    problem = family_problem(4, 30, 8, dtype=torch.float32, seed=3, ignored=range(4))
    impl = assert_family_matches(case, problem, "chunked")
    assert impl["loss"] == 0.0


# ---- hand-worked values of prepare -------------------------------------------------------------


def test_elasticface_plus_pairs_draws_as_the_official_code():
    # order = argsort(descending) of the target cosines [0.1, 0.9, 0.5] is [1, 2, 0]; the official
    # code gives row k the order[k]-th smallest draw: rows 0, 1, 2 get d(1), d(2), d(0).
    family = ElasticFace(s=2.0, m=0.35, std=0.2, kind="cos", plus=True)
    cos = torch.tensor([0.1, 0.9, 0.5, 0.3])
    valid = torch.tensor([True, True, True, False])
    torch.manual_seed(0)
    drawn = torch.normal(mean=0.35, std=0.2, size=(3, 1)).squeeze(1).sort().values
    torch.manual_seed(0)
    margins = cos - family.prepare(cos, torch.ones(4), valid).target_logit / 2.0
    torch.testing.assert_close(margins[:3], drawn[[1, 2, 0]])
    assert float(margins[3]) == 0.0


def test_elasticface_draws_one_margin_per_labelled_row():
    family = ElasticFace(kind="arc", m=0.5, std=0.0125)
    cos = torch.tensor([0.2, 0.4, 0.6])
    torch.manual_seed(3)
    logit = family.prepare(cos, torch.ones(3), torch.tensor([True, False, True])).target_logit
    torch.manual_seed(3)
    drawn = torch.normal(mean=0.5, std=0.0125, size=(2, 1)).squeeze(1)
    torch.testing.assert_close(logit[[0, 2]], 64.0 * torch.cos(torch.acos(cos[[0, 2]]) + drawn))


def test_adaface_statistics_and_margin_by_hand():
    family = AdaFace(s=10.0, m=0.4, h=0.5, t_alpha=0.5)
    norms = torch.tensor([10.0, 30.0, 500.0])  # 500 is clipped to 100 for the statistics
    valid = torch.tensor([True, True, False])
    cos = torch.tensor([0.5, 0.5, 0.5])
    logit = family.prepare(cos, norms, valid).target_logit
    # mean(10, 30) = 20, std = sqrt(200) = 14.142…; μ = 0.5·20 + 0.5·20 = 20, σ = 0.5·14.142 + 50.
    sigma = 0.5 * math.sqrt(200.0) + 50.0
    assert float(family.batch_mean) == pytest.approx(20.0)
    assert float(family.batch_std) == pytest.approx(sigma)
    scaler = 0.5 * (30.0 - 20.0) / (sigma + 1e-3)
    expected = 10.0 * (math.cos(math.acos(0.5) - 0.4 * scaler) - (0.4 + 0.4 * scaler))
    assert float(logit[1]) == pytest.approx(expected, rel=1e-6)
    assert float(logit[0]) == pytest.approx(10.0 * (math.cos(math.acos(0.5) + 0.4 * scaler) - 0.4 + 0.4 * scaler))


def test_adaface_nan_norm_leaves_the_statistics_as_without_its_row():
    """With check_finite off a NaN embedding reaches the family: its own row's logit is NaN, the
    running statistics move as if the row were unlabelled, so later batches are unharmed."""
    with_nan, without = AdaFace(t_alpha=0.5), AdaFace(t_alpha=0.5)
    cos = torch.tensor([0.5, 0.5, 0.5])
    logit = with_nan.prepare(cos, torch.tensor([10.0, float("nan"), 30.0]), torch.tensor([True] * 3)).target_logit
    without.prepare(cos, torch.tensor([10.0, 1.0, 30.0]), torch.tensor([True, False, True]))
    assert torch.isnan(logit[1]) and torch.isfinite(logit[[0, 2]]).all()
    assert float(with_nan.batch_mean) == float(without.batch_mean) == pytest.approx(20.0)
    assert float(with_nan.batch_std) == float(without.batch_std)


def test_curricular_nan_cosine_leaves_t_as_without_its_row():
    with_nan, without = CurricularFace(), CurricularFace()
    with_nan.prepare(torch.tensor([0.5, float("nan"), 0.3]), None, torch.tensor([True] * 3))
    without.prepare(torch.tensor([0.5, 0.0, 0.3]), None, torch.tensor([True, False, True]))
    assert float(with_nan.t) == float(without.t) == pytest.approx(0.01 * 0.4)


def test_adaface_one_labelled_row_keeps_the_std():
    family = AdaFace(t_alpha=0.5)
    family.prepare(torch.tensor([0.1, 0.2]), torch.tensor([30.0, 7.0]), torch.tensor([True, False]))
    assert float(family.batch_mean) == pytest.approx(25.0) and float(family.batch_std) == 100.0
    family.prepare(torch.tensor([0.1]), torch.tensor([30.0]), torch.tensor([False]))
    assert float(family.batch_mean) == pytest.approx(25.0) and float(family.batch_std) == 100.0
    assert AdaFace.cos_clamp == 1e-3


def test_magface_margin_and_regularizer_by_hand():
    family = MagFace()
    cos = torch.tensor([0.3, 0.5, -0.2])
    norms = torch.tensor([20.0, 50.0, 5.0], requires_grad=True)
    terms = family.prepare(cos, norms, torch.tensor([True, True, False]))
    # g(20) = 20/110² + 1/20, g(50) = 50/110² + 1/50, their mean times λ_g = 35.
    expected_g = 35.0 * 0.5 * (20 / 110**2 + 1 / 20 + 50 / 110**2 + 1 / 50)
    assert float(terms.extra_loss.detach()) == pytest.approx(expected_g, rel=1e-6)
    margin = 0.35 / 100.0 * (20.0 - 10.0) + 0.45  # 0.485
    assert float(terms.target_logit[0]) == pytest.approx(64.0 * math.cos(math.acos(0.3) + margin), rel=1e-5)
    # Row 2: c < 0 with easy_margin, no margin; its norm 5 is clamped to l_a (no gradient).
    assert float(terms.target_logit[2]) == pytest.approx(-12.8)
    (terms.target_logit[0] + terms.extra_loss).backward()
    # d/da of s·cos(θ + m(a)) = −s·sin(θ + m)·0.0035, plus λ_g·½·(1/u_a² − 1/a²).
    slope = -64.0 * math.sin(math.acos(0.3) + margin) * 0.0035 + 35.0 * 0.5 * (1 / 110**2 - 1 / 400)
    assert float(norms.grad[0]) == pytest.approx(slope, rel=1e-5)
    assert float(norms.grad[2]) == 0.0


def test_curricularface_t_and_threshold_by_hand():
    family = CurricularFace(s=64.0, m=0.5)
    cos = torch.tensor([0.3, 0.5, -0.95, 0.0])
    terms = family.prepare(cos, torch.ones(4), torch.tensor([True, True, True, False]))
    assert float(family.t) == pytest.approx(0.01 * (0.3 + 0.5 - 0.95) / 3)
    assert terms.negative.kind == "curricular" and terms.negative.t == float(family.t)
    with_margin = [math.cos(math.acos(c) + 0.5) for c in (0.3, 0.5, -0.95, 0.0)]
    torch.testing.assert_close(terms.negative.threshold, torch.tensor(with_margin))
    # -0.95 ≤ cos(π − 0.5): the branch c − sin(π − m)·m.
    assert float(terms.target_logit[2]) == pytest.approx(64.0 * (-0.95 - math.sin(math.pi - 0.5) * 0.5), rel=1e-6)
    assert float(terms.target_logit[0]) == pytest.approx(64.0 * with_margin[0], rel=1e-6)


# ---- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "name"),
    [
        (lambda: ElasticFace(s=0.0), ValueError, "s"),
        (lambda: ElasticFace(m="0.5"), TypeError, "m"),
        (lambda: ElasticFace(m=4.0), ValueError, "m"),
        (lambda: ElasticFace(std=-0.1), ValueError, "std"),
        (lambda: ElasticFace(kind="sphere"), ValueError, "kind"),
        (lambda: ElasticFace(plus=1), TypeError, "plus"),
        (lambda: AdaFace(m=float("nan")), ValueError, "m"),
        (lambda: AdaFace(h=0.0), ValueError, "h"),
        (lambda: AdaFace(t_alpha=1.5), ValueError, "t_alpha"),
        (lambda: MagFace(l_a=0.0), ValueError, "l_a"),
        (lambda: MagFace(u_a=5.0), ValueError, "u_a"),
        (lambda: MagFace(u_margin=0.4), ValueError, "u_margin"),
        (lambda: MagFace(lambda_g=-1.0), ValueError, "lambda_g"),
        (lambda: MagFace(easy_margin=None), TypeError, "easy_margin"),
        (lambda: CurricularFace(m=-0.1), ValueError, "m"),
        (lambda: CurricularFace(s=True), TypeError, "s"),
    ],
)
def test_bad_hyperparameters(build, error, name):
    with pytest.raises(error, match=rf"\.{name} "):
        build()


def test_defaults_are_the_official_ones():
    assert (ElasticFace().s, ElasticFace().m, ElasticFace().std) == (64.0, 0.5, 0.0125)
    assert ElasticFace(kind="cos").m == 0.35
    ada = AdaFace()
    assert (ada.s, ada.m, ada.h, ada.t_alpha) == (64.0, 0.4, 0.333, 0.01)
    assert (float(ada.batch_mean), float(ada.batch_std)) == (20.0, 100.0)
    mag = MagFace()
    assert (mag.l_a, mag.u_a, mag.l_margin, mag.u_margin, mag.lambda_g, mag.easy_margin) == (
        10.0,
        110.0,
        0.45,
        0.8,
        35.0,
        True,
    )
    assert (CurricularFace().m, float(CurricularFace().t)) == (0.5, 0.0)


@pytest.mark.parametrize("family", [AdaFace(), CurricularFace()], ids=type)
def test_running_state_is_in_the_head_state_dict(family):
    head = MarginCCSHead(10, 8, margin=copy.deepcopy(family))
    assert {name for name, _ in family.named_buffers()} <= {key.split(".")[-1] for key in head.state_dict()}
