import math

import pytest
import torch

from crfiqa_kernels import Margin


def test_defaults_are_arcface():
    assert Margin() == Margin.arcface(64.0, 0.5) == Margin(s=64.0, m1=1.0, m2=0.5, m3=0.0)
    assert Margin.cosface(30.0, 0.35) == Margin(s=30.0, m1=1.0, m2=0.0, m3=0.35)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"s": 0.0}, ValueError),
        ({"s": -1.0}, ValueError),
        ({"s": float("nan")}, ValueError),
        ({"m1": 0.0}, ValueError),
        ({"m2": -0.1}, ValueError),
        ({"m2": math.pi}, ValueError),
        ({"m3": 2.5}, ValueError),
        ({"m3": float("inf")}, ValueError),
        ({"s": "64"}, TypeError),
        ({"m2": True}, TypeError),
    ],
)
def test_invalid_parameters_name_the_field(kwargs, error):
    with pytest.raises(error, match=f"Margin.{next(iter(kwargs))}"):
        Margin(**kwargs)


@pytest.mark.parametrize("margin", [Margin(), Margin.cosface(), Margin(s=8.0, m1=1.3, m2=0.2, m3=0.05)])
def test_phi_and_its_derivative(margin):
    cos = torch.linspace(-0.999, 0.999, 101, dtype=torch.float64, requires_grad=True)
    theta = torch.arccos(cos)
    expected = torch.cos(margin.m1 * theta + margin.m2) - margin.m3
    torch.testing.assert_close(margin.phi(cos), expected)
    (autograd_slope,) = torch.autograd.grad(margin.phi(cos).sum(), cos)
    torch.testing.assert_close(margin.phi_grad(cos.detach()), autograd_slope)


def test_phi_grad_is_finite_at_the_ends():
    ends = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    assert bool(torch.isfinite(Margin().phi_grad(ends)).all())
    torch.testing.assert_close(Margin.cosface().phi_grad(ends), torch.ones(2, dtype=torch.float64))
    multiplicative = Margin(s=1.0, m1=1.3, m2=0.0, m3=0.0).phi_grad(torch.tensor([1.0], dtype=torch.float64))
    torch.testing.assert_close(multiplicative, torch.tensor([1.3**2], dtype=torch.float64))
