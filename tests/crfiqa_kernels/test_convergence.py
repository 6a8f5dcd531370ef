"""Convergence, in the manner of Liger-Kernel's convergence tests: a small model trained a few
hundred steps with the fused op and with the materializing reference, from the same seed, follows
the same loss curve within float tolerance — the op is a drop-in replacement, step after step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from crfiqa_kernels import AdaFace, CRFIQALoss, CurricularFace, ElasticFace, MagFace, Margin, MarginCCSHead
from crfiqa_kernels.backends import is_available

from ..flags import torch_flags

pytestmark = pytest.mark.slow  # training runs

CLASSES, INPUTS, DIM, BATCH = 37, 24, 16, 20  # sizes that are multiples of no block size
STEPS = 300
# Under Triton's CPU interpreter a step takes ~0.2 s: 100 steps (past the phase of large, fast
# changing losses, where a difference between the backends would grow) keep the test near 20 s.
INTERPRETED_STEPS = 100
# Largest per-step loss gap allowed between a backend and the reference: float32 rounding (the
# measured gap is ~1e-6) or float64 rounding (~1e-15), with room to spare.
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Each family at the tiny model's scale (its embedding norms lie near 1–5: MagFace's and AdaFace's
# norm ranges follow), trained for FAMILY_STEPS in float64 with chunked and with the reference.
FAMILIES = {
    "elasticface-arc-plus": lambda: ElasticFace(s=16.0, m=0.3, std=0.05, plus=True),
    "elasticface-cos": lambda: ElasticFace(s=16.0, kind="cos", m=0.2, std=0.05),
    "adaface": lambda: AdaFace(s=16.0, m=0.3, t_alpha=0.1),
    "magface": lambda: MagFace(s=16.0, l_a=1.0, u_a=6.0, l_margin=0.2, u_margin=0.4, lambda_g=1.0),
    "curricularface": lambda: CurricularFace(s=16.0, m=0.3),
}
FAMILY_STEPS = 150


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these tiny products gain nothing from a second one, which would only
    contend with other processes for the cores."""
    with torch_flags(threads=1):
        yield


def _dataset(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random prototype per class plus noise; every fifth label ignored (-1)."""
    prototypes = torch.randn(CLASSES, INPUTS, generator=generator)
    labels = torch.arange(8 * CLASSES) % CLASSES
    inputs = prototypes[labels] + 0.7 * torch.randn(len(labels), INPUTS, generator=generator)
    labels[::5] = -1
    return inputs, labels


def _train(
    backend: str, dtype: torch.dtype, steps: int, device: str = "cpu", margin=None
) -> tuple[list[float], list[torch.Tensor]]:
    """The total loss of every step and the trained parameters of a backbone, a quality head and a
    class-center head (ArcFace s=16, m=0.3 unless ``margin`` builds another family) trained from a
    fixed seed with SGD and the CR-FIQA loss."""
    generator = torch.Generator().manual_seed(0)
    inputs, labels = _dataset(generator)
    inputs, labels = inputs.to(device, dtype), labels.to(device)
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(INPUTS, 32), nn.ReLU(), nn.Linear(32, DIM)).to(device, dtype)
    quality_head = nn.Linear(DIM, 1).to(device, dtype)
    family = Margin.arcface(s=16.0, m=0.3) if margin is None else margin()
    head = MarginCCSHead(CLASSES, DIM, family, backend=backend).to(device, dtype)
    criterion = CRFIQALoss(head)
    parameters = [*backbone.parameters(), *quality_head.parameters(), *head.parameters()]
    optimizer = torch.optim.SGD(parameters, lr=0.005, momentum=0.9)
    losses = []
    for _ in range(steps):
        rows = torch.randint(len(labels), (BATCH,), generator=generator).to(device)
        embeddings = backbone(inputs[rows])
        total, _ = criterion(embeddings, quality_head(embeddings), labels[rows])
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
    return losses, [parameter.detach() for parameter in parameters]


def _assert_same_training(
    backend: str, dtype: torch.dtype, steps: int, device: str, margin=None, learns: float = 0.2
) -> None:
    expected, expected_parameters = _train("reference", dtype, steps, device, margin)
    actual, actual_parameters = _train(backend, dtype, steps, device, margin)
    assert sum(expected[-10:]) < learns * sum(expected[:10])  # not vacuous: the model learns
    tolerance = TOLERANCE[dtype]
    as_tensor = lambda losses: torch.tensor(losses, dtype=torch.float64)  # noqa: E731
    torch.testing.assert_close(as_tensor(actual), as_tensor(expected), rtol=tolerance, atol=tolerance)
    for actual_parameter, expected_parameter in zip(actual_parameters, expected_parameters, strict=True):
        torch.testing.assert_close(actual_parameter, expected_parameter, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_chunked_training_follows_the_reference(dtype):
    _assert_same_training("chunked", dtype, STEPS, "cpu")


@pytest.mark.skipif(not is_available("triton", torch.device(DEVICE)), reason="Triton cannot run here")
def test_triton_training_follows_the_reference():
    steps = STEPS if DEVICE == "cuda" else INTERPRETED_STEPS
    _assert_same_training("triton", torch.float32, steps, DEVICE)


@pytest.mark.parametrize("family", FAMILIES)
def test_chunked_training_follows_the_reference_with_each_family(family):
    _assert_same_training("chunked", torch.float64, FAMILY_STEPS, "cpu", FAMILIES[family], learns=0.7)
