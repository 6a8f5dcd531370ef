"""The iResNet backbones: the authors' state-dict layout, golden outputs, loading released weights.

How the reference values were obtained: the layout hashes were computed from the authors' released
CR-FIQA code (``backbones/iresnet.py`` of github.com/fdbtrs/CR-FIQA, ``iresnetNN(num_features=512,
qs=1, use_se=False, dropout=0.4)``) as sha256 over ``"key (shape)"`` lines in state-dict order. With
the same seed that code and ours initialize bitwise-equal weights and give bitwise-equal outputs
(eval and train mode, checked once side by side); the golden outputs below were then computed once
from our implementation in float64 by the procedure of :func:`_golden_forward`, and are compared
within the rounding bound of :func:`rounding_bound`, not to recorded float32 digits.
"""

import hashlib

import pytest
import torch

from crfiqa import models
from crfiqa.models.iresnet import IBasicBlock

AUTHORS_LAYOUT_SHA256 = {
    models.iresnet18: "b43a2b6c1ac93242dfdb847d1e9106df23b4805f151ce2b1ef2a4a9d7744df1c",
    models.iresnet34: "215685e71aa9f094b60674ca0f258ff823a45b26942a1e6696aaf73de310af00",
    models.iresnet50: "27ee45bdc8f088da50b64f9f2797d2035d2ab1e81913004a4148095b72386059",
    models.iresnet100: "1378f501ecb0e3c3d9b397e7cec483739574639f5ff4c2882c4e210aa82941da",
}
DEPTHS = {
    models.iresnet18: (2, 2, 2, 2),
    models.iresnet34: (3, 4, 6, 3),
    models.iresnet50: (3, 4, 14, 3),
    models.iresnet100: (3, 13, 30, 3),
}

# (embedding[:, :5], quality, ‖embedding‖) of two images, from the float64 network; see _golden_forward.
GOLDEN = {
    models.iresnet18: (
        [
            [0.438106584139371, 0.0595411030198957, -0.395828247819998, -6.57984169034478, 1.96577515571102],
            [0.281414238193524, -0.518685579426973, -0.452826697773149, -2.33597583531719, 2.63234231420569],
        ],
        [7.53803614087282, -1.53435578392098],
        [298.281027727025, 463.086626831861],
    ),
    models.iresnet50: (
        [
            [-2.4585020468278, -0.359110716852131, -0.0412800893147767, 0.500037106945226, 0.886900860039004],
            [7.64047099993134, -2.18994393552283, -0.0848079275244453, -0.027982631072034, -0.578122033420616],
        ],
        [4.84827973076083, 5.53689584395559],
        [244.402420684008, 214.290513175233],
    ),
    models.iresnet100: (
        [
            [2.37366988505799, -0.782306265184098, -2.7079157314112, 3.07175074543872, -0.0669227233640533],
            [-15.2003017133674, -0.276799858157571, -1.23224353580049, -0.249263674126309, -2.00775607033688],
        ],
        [-5.52370549380818, -16.8874621658284],
        [478.081038860516, 319.14744277871],
    ),
}


def _layout(model) -> str:
    return "\n".join(f"{key} {tuple(value.shape)}" for key, value in model.state_dict().items())


def _bn(prefix, channels):
    return {f"{prefix}.{name}": (channels,) for name in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()
    }


def authors_key_shapes(depths, num_features=512):
    """The authors' state-dict keys and shapes, written out from their architecture description."""
    shapes = {"conv1.weight": (64, 3, 3, 3), **_bn("bn1", 64), "prelu.weight": (64,)}
    in_channels = 64
    for stage, (depth, width) in enumerate(zip(depths, (64, 128, 256, 512), strict=True), start=1):
        for block in range(depth):
            prefix = f"layer{stage}.{block}"
            block_in = in_channels if block == 0 else width
            shapes |= _bn(f"{prefix}.bn1", block_in)
            shapes[f"{prefix}.conv1.weight"] = (width, block_in, 3, 3)
            shapes |= _bn(f"{prefix}.bn2", width)
            shapes[f"{prefix}.prelu.weight"] = (width,)
            shapes[f"{prefix}.conv2.weight"] = (width, width, 3, 3)
            shapes |= _bn(f"{prefix}.bn3", width)
            if block == 0:  # every stage starts with a strided block
                shapes[f"{prefix}.downsample.0.weight"] = (width, block_in, 1, 1)
                shapes |= _bn(f"{prefix}.downsample.1", width)
        in_channels = width
    shapes |= _bn("bn2", 512)
    shapes |= {"fc.weight": (num_features, 512 * 7 * 7), "fc.bias": (num_features,)}
    shapes |= _bn("features", num_features)
    shapes |= {"qs.weight": (1, num_features), "qs.bias": (1,)}
    return shapes


@pytest.mark.parametrize("constructor", list(AUTHORS_LAYOUT_SHA256), ids=lambda f: f.__name__)
def test_state_dict_layout_equals_the_authors(constructor):
    with torch.device("meta"):
        model = constructor(num_features=512)
    assert hashlib.sha256(_layout(model).encode()).hexdigest() == AUTHORS_LAYOUT_SHA256[constructor]
    expected = authors_key_shapes(DEPTHS[constructor])
    assert {key: tuple(value.shape) for key, value in model.state_dict().items()} == expected


@pytest.mark.parametrize("constructor", [models.iresnet50, models.iresnet100], ids=lambda f: f.__name__)
def test_authors_key_names_load_strictly(constructor):
    # A distinct constant per key, so that equality below proves each tensor landed under its name.
    state = {
        key: torch.full(shape, index, dtype=torch.int64 if key.endswith("num_batches_tracked") else torch.float32)
        for index, (key, shape) in enumerate(authors_key_shapes(DEPTHS[constructor]).items())
    }
    with torch.device("meta"):
        model = constructor(num_features=512)
    model.load_state_dict(state, strict=True, assign=True)
    assert all(torch.equal(model.state_dict()[key], value) for key, value in state.items())
    with torch.device("meta"):
        other = constructor(num_features=512)
    with pytest.raises(RuntimeError, match="Missing key"):
        other.load_state_dict({k: v for k, v in state.items() if k != "qs.bias"}, assign=True)


def _golden_forward(constructor, dtype):
    """Seed 0 weights; BatchNorm statistics from one train-mode pass over a seeded calibration batch
    (cumulative average), then eval-mode outputs for a second seeded batch; everything in ``dtype``."""
    torch.manual_seed(0)
    model = constructor(num_features=512, dropout=0.0)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None
    model = model.to(dtype)
    generator = torch.Generator().manual_seed(1)
    calibration = torch.randn(2, 3, 112, 112, generator=generator).to(dtype)
    images = torch.randn(2, 3, 112, 112, generator=generator).to(dtype)
    with torch.no_grad():
        model.train()(calibration)
        return model, *model.eval()(images)


def rounding_bound(model, dtype) -> float:
    """A first-order bound on the normwise relative error of ``model``'s forward in ``dtype``.

    A dot product of length K rounds with relative error at most K·u (Higham's γ_K, u the unit
    roundoff, half of ``finfo.eps``), whatever order or vector width the kernel sums in (direct,
    im2col or tiled). To first order the relative errors of the layers on the path add up, each
    layer taken as well conditioned (normalized by BatchNorm, residuals added): Σ over the
    convolutions and linear layers of K = in_channels·kh·kw (or in_features), plus 4 roundings for
    each BatchNorm (subtract, scale, shift, the square root) and one for each PReLU and residual add.
    For iresnet18 this is 3.3e-3 in float32 (measured: 2e-5 to 1.5e-4 on AVX2 and AVX-512 CPUs) and
    6e-12 in float64: a different BLAS cannot cross it, a change of the network (O(1)) cannot hide.
    """
    roundings = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            roundings += module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        elif isinstance(module, torch.nn.Linear):
            roundings += module.in_features
        elif isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            roundings += 4
        elif isinstance(module, (torch.nn.PReLU, IBasicBlock)):
            roundings += 1
    return roundings * torch.finfo(dtype).eps / 2


def _assert_golden(constructor, dtype):
    """Embedding head, quality and norm against the float64 record, within the rounding bound of
    ``dtype`` (plus float64's own, which bounds the record): elements and norm by bound·‖e‖,
    the quality q = w·e + b by bound·(‖w‖·‖e‖ + |b|)."""
    model, embedding, quality = _golden_forward(constructor, dtype)
    head, expected_quality, norms = (torch.tensor(values, dtype=torch.float64) for values in GOLDEN[constructor])
    assert embedding.shape == (2, 512) and quality.shape == (2,)
    bound = rounding_bound(model, dtype) + rounding_bound(model, torch.float64)
    qs_weight, qs_bias = model.qs.weight.double().norm(), model.qs.bias.double().abs()
    embedding, quality = embedding.double(), quality.double()
    for got, expected, scale in (
        (embedding[:, :5], head, norms[:, None]),
        (embedding.norm(dim=1), norms, norms),
        (quality, expected_quality, qs_weight * norms + qs_bias),
    ):
        error = (got - expected).abs()
        assert (error <= bound * scale).all(), (error / scale).max().item() / bound


FAST_BACKBONE = [models.iresnet18] + [
    pytest.param(c, marks=pytest.mark.slow) for c in (models.iresnet50, models.iresnet100)
]


@pytest.mark.parametrize("constructor", FAST_BACKBONE, ids=lambda f: f.__name__)
def test_golden_outputs_in_float64(constructor):
    """The network itself: float64 outputs equal the record to float64's rounding bound."""
    _assert_golden(constructor, torch.float64)


@pytest.mark.parametrize("constructor", FAST_BACKBONE, ids=lambda f: f.__name__)
def test_float32_outputs_within_the_rounding_bound(constructor):
    """What users run: float32 outputs within float32's rounding bound of the float64 record."""
    _assert_golden(constructor, torch.float32)


def test_dropout_acts_in_training_only():
    torch.manual_seed(0)
    model = models.IResNet([1, 1, 1, 1], num_features=16, widths=[4, 8, 8, 16], input_size=16, dropout=0.4)
    images = torch.randn(3, 3, 16, 16)
    assert isinstance(model.dropout, torch.nn.Dropout) and model.dropout.p == 0.4
    model.eval()
    with torch.no_grad():
        first, second = model(images)[0], model(images)[0]
    assert torch.equal(first, second)
    model.train()
    with torch.no_grad():
        torch.manual_seed(1)
        a = model(images)[0]
        torch.manual_seed(2)
        b = model(images)[0]
    assert not torch.equal(a, b)


def test_config_round_trip_through_state_dict_shapes():
    for constructor, depths in DEPTHS.items():
        with torch.device("meta"):
            model = constructor(num_features=256)
        assert models.config_from_state_dict(model.state_dict()) == model.config
        assert model.config["depths"] == list(depths)
    small = models.IResNet([1, 2, 1, 1], num_features=24, widths=[8, 16, 16, 32], input_size=32)
    assert models.config_from_state_dict(small.state_dict()) == small.config
    assert models.build_iresnet(small.config).config == small.config


def test_load_backbone_accepts_bare_ddp_and_checkpoint_state_dicts(tmp_path):
    torch.manual_seed(0)
    model = models.IResNet([1, 1, 1, 1], num_features=16, widths=[4, 8, 8, 16], input_size=16).eval()
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(images)
    state = model.state_dict()
    files = {
        "bare.pth": state,
        "ddp.pth": {f"module.{key}": value for key, value in state.items()},
        "checkpoint.pt": {"backbone": state, "model_config": model.config, "step": 3},
    }
    for name, payload in files.items():
        torch.save(payload, tmp_path / name)
        loaded = models.load_backbone(tmp_path / name)
        assert not loaded.training
        with torch.no_grad():
            for got, want in zip(loaded(images), expected, strict=True):
                assert torch.equal(got, want)


def test_load_backbone_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        models.load_backbone(tmp_path / "missing.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        models.load_backbone(tmp_path / "garbage.pth")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not an iResNet"):
        models.load_backbone(tmp_path / "other.pth")


def test_bad_input_shape_names_the_argument():
    model = models.IResNet([1, 1, 1, 1], num_features=8, widths=[4, 4, 4, 4], input_size=16)
    with pytest.raises(ValueError, match="images must have shape"):
        model(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="input_size"):
        models.IResNet([1, 1, 1, 1], input_size=20)
