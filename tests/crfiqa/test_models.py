"""The iResNet backbones: the authors' state-dict layout, golden outputs, loading released weights.

How the reference values were obtained: the layout hashes were computed from the authors' released
CR-FIQA code (``backbones/iresnet.py`` of github.com/fdbtrs/CR-FIQA, ``iresnetNN(num_features=512,
qs=1, use_se=False, dropout=0.4)``) as sha256 over ``"key (shape)"`` lines in state-dict order. With
the same seed that code and ours initialize bitwise-equal weights and give bitwise-equal outputs
(eval and train mode, checked once side by side); the golden outputs below were then computed once
from our implementation by the procedure of :func:`_golden_forward`.
"""

import hashlib

import pytest
import torch

from crfiqa.models import (
    IResNet,
    build_iresnet,
    config_from_state_dict,
    iresnet18,
    iresnet34,
    iresnet50,
    iresnet100,
    load_backbone,
)

AUTHORS_LAYOUT_SHA256 = {
    iresnet18: "b43a2b6c1ac93242dfdb847d1e9106df23b4805f151ce2b1ef2a4a9d7744df1c",
    iresnet34: "215685e71aa9f094b60674ca0f258ff823a45b26942a1e6696aaf73de310af00",
    iresnet50: "27ee45bdc8f088da50b64f9f2797d2035d2ab1e81913004a4148095b72386059",
    iresnet100: "1378f501ecb0e3c3d9b397e7cec483739574639f5ff4c2882c4e210aa82941da",
}
DEPTHS = {iresnet18: (2, 2, 2, 2), iresnet34: (3, 4, 6, 3), iresnet50: (3, 4, 14, 3), iresnet100: (3, 13, 30, 3)}

# (embedding[:, :5], quality, ‖embedding‖) of two images; see _golden_forward.
GOLDEN = {
    iresnet18: (
        [[0.4381, 0.0595, -0.3958, -6.5798, 1.9658], [0.2814, -0.5187, -0.4528, -2.336, 2.6323]],
        [7.5386, -1.5344],
        [298.295, 463.096],
    ),
    iresnet50: (
        [[-2.4585, -0.3591, -0.0413, 0.5, 0.8869], [7.6405, -2.1899, -0.0848, -0.028, -0.5781]],
        [4.8482, 5.5371],
        [244.391, 214.293],
    ),
    iresnet100: (
        [[2.3737, -0.7823, -2.7079, 3.0719, -0.0669], [-15.2003, -0.2768, -1.2322, -0.2493, -2.0078]],
        [-5.5249, -16.8899],
        [478.123, 319.181],
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


@pytest.mark.parametrize("constructor", [iresnet50, iresnet100], ids=lambda f: f.__name__)
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


def _golden_forward(constructor):
    """Seed 0 weights; BatchNorm statistics from one train-mode pass over a seeded calibration batch
    (cumulative average), then eval-mode outputs for a second seeded batch."""
    torch.manual_seed(0)
    model = constructor(num_features=512, dropout=0.0)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None
    generator = torch.Generator().manual_seed(1)
    calibration = torch.randn(2, 3, 112, 112, generator=generator)
    images = torch.randn(2, 3, 112, 112, generator=generator)
    with torch.no_grad():
        model.train()(calibration)
        return model.eval()(images)


@pytest.mark.parametrize("constructor", list(GOLDEN), ids=lambda f: f.__name__)
def test_golden_outputs(constructor):
    embedding, quality = _golden_forward(constructor)
    head, expected_quality, norms = GOLDEN[constructor]
    assert embedding.shape == (2, 512) and quality.shape == (2,)
    torch.testing.assert_close(embedding[:, :5], torch.tensor(head), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(quality, torch.tensor(expected_quality), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(embedding.norm(dim=1), torch.tensor(norms), rtol=1e-4, atol=1e-2)


def test_dropout_acts_in_training_only():
    torch.manual_seed(0)
    model = IResNet([1, 1, 1, 1], num_features=16, widths=[4, 8, 8, 16], input_size=16, dropout=0.4)
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
        assert config_from_state_dict(model.state_dict()) == model.config
        assert model.config["depths"] == list(depths)
    small = IResNet([1, 2, 1, 1], num_features=24, widths=[8, 16, 16, 32], input_size=32)
    assert config_from_state_dict(small.state_dict()) == small.config
    assert build_iresnet(small.config).config == small.config


def test_load_backbone_accepts_bare_ddp_and_checkpoint_state_dicts(tmp_path):
    torch.manual_seed(0)
    model = IResNet([1, 1, 1, 1], num_features=16, widths=[4, 8, 8, 16], input_size=16).eval()
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
        loaded = load_backbone(tmp_path / name)
        assert not loaded.training
        with torch.no_grad():
            for got, want in zip(loaded(images), expected, strict=True):
                assert torch.equal(got, want)


def test_load_backbone_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_backbone(tmp_path / "missing.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_backbone(tmp_path / "garbage.pth")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not an iResNet"):
        load_backbone(tmp_path / "other.pth")


def test_bad_input_shape_names_the_argument():
    model = IResNet([1, 1, 1, 1], num_features=8, widths=[4, 4, 4, 4], input_size=16)
    with pytest.raises(ValueError, match="images must have shape"):
        model(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="input_size"):
        IResNet([1, 1, 1, 1], input_size=20)
