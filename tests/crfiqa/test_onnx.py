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
