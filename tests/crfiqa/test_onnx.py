"""ONNX export: onnxruntime's outputs match PyTorch's to 1e-4, for any batch size."""

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")  # optional packages (the wrapper extra): skip cleanly without them
pytest.importorskip("onnxruntime")

from crfiqa.onnx_export import OnnxQualityModel, export_onnx
from crfiqa.score import load_quality_model, open_images, score_images

from .synthetic import calibrated_backbone, write_images


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    model = calibrated_backbone(input_size=32, num_features=24)
    torch.save(model.state_dict(), folder / "backbone.pth")
    return model, export_onnx(model, folder / "model.onnx"), folder


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_matches_pytorch(exported, batch):
    model, path, _ = exported
    images = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        embedding, quality = model(images)
    onnx_model = OnnxQualityModel(path, ["CPUExecutionProvider"])
    onnx_embedding, onnx_quality = onnx_model(images)
    assert onnx_model.input_size == 32 and onnx_quality.shape == (batch,)
    np.testing.assert_allclose(onnx_embedding, embedding.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(onnx_quality, quality.numpy(), rtol=0, atol=1e-4)
    assert np.abs(quality.numpy()).max() > 0.1  # a non-trivial output, not a constant


def test_scoring_through_onnxruntime_matches_pytorch(exported, tmp_path):
    _, path, folder = exported
    write_images(tmp_path / "faces", 4, size=40)  # resized to the model's 32 × 32 input
    dataset = open_images(tmp_path / "faces", 32)
    torch_scores = score_images(load_quality_model(folder / "backbone.pth", "cpu"), dataset, progress=False)
    onnx_scores = score_images(load_quality_model(path), dataset, batch_size=3, progress=False)
    assert onnx_scores.names == torch_scores.names
    np.testing.assert_allclose(onnx_scores.scores, torch_scores.scores, rtol=0, atol=1e-4)


def test_export_refuses_other_modules(tmp_path):
    with pytest.raises(TypeError, match="IResNet"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx")


def test_uint8_rgb_graph_matches_pytorch_on_raw_crops(exported, tmp_path):
    """The normalization baked into the graph: uint8 (N, S, S, 3) RGB crops in, PyTorch's outputs
    (on the crops normalized as crfiqa.data.normalize does) out, to 1e-5."""
    import onnxruntime

    from crfiqa.data import normalize

    model, _, _ = exported
    path = export_onnx(model, tmp_path / "uint8.onnx", input_kind="uint8-rgb")
    crops = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (feed,) = session.get_inputs()
    assert feed.type == "tensor(uint8)" and feed.shape[1:] == [32, 32, 3]
    onnx_embedding, onnx_quality = session.run(["embedding", "quality"], {"images": crops})
    with torch.no_grad():
        embedding, quality = model(normalize(torch.from_numpy(crops).permute(0, 3, 1, 2)))
    np.testing.assert_allclose(onnx_quality, quality.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(onnx_embedding, embedding.numpy(), rtol=0, atol=1e-5)
    # crfiqa score reads either kind: normalized batches are handed back to the graph as pixels.
    reader = OnnxQualityModel(path, ["CPUExecutionProvider"])
    assert reader.input_kind == "uint8-rgb" and reader.input_size == 32
    np.testing.assert_allclose(reader(normalize(torch.from_numpy(crops).permute(0, 3, 1, 2)))[1], onnx_quality, atol=0)


def test_export_onnx_uint8_rgb_command_then_score(exported, tmp_path, capsys):
    from crfiqa.cli import main
    from crfiqa.formats import read_quality_scores

    _, _, folder = exported
    onnx_path = tmp_path / "uint8.onnx"
    assert main(["export-onnx", str(folder / "backbone.pth"), str(onnx_path), "--input", "uint8-rgb"]) == 0
    difference = float(capsys.readouterr().out.rsplit(" ", 1)[-1])
    assert difference < 1e-5
    write_images(tmp_path / "faces", 3, size=32)
    for model, output in ((folder / "backbone.pth", "torch.txt"), (onnx_path, "onnx.txt")):
        assert (
            main(["score", str(model), str(tmp_path / "faces"), "--output", str(tmp_path / output), "--no-progress"])
            == 0
        )
    torch_scores, onnx_scores = (read_quality_scores(tmp_path / name) for name in ("torch.txt", "onnx.txt"))
    assert torch_scores.keys() == onnx_scores.keys()
    for name, score in torch_scores.items():
        assert onnx_scores[name] == pytest.approx(score, abs=1e-5)
