import pytest
import torch
import torch.nn.functional as F

from crfiqa_kernels import CRFIQALoss, Margin, MarginCCSHead, cr_target, margin_ccs_loss


def test_head_initialization_and_forward():
    torch.manual_seed(0)
    head = MarginCCSHead(5000, 64, Margin.cosface(), backend="chunked")
    assert head.weight.shape == (5000, 64)
    assert abs(float(head.weight.detach().std()) - 0.01) < 5e-4 and abs(float(head.weight.detach().mean())) < 5e-4
    embeddings, labels = torch.randn(8, 64), torch.randint(0, 5000, (8,))
    out = head(embeddings, labels)
    expected = margin_ccs_loss(embeddings, head.weight, labels, Margin.cosface(), backend="chunked")
    torch.testing.assert_close(out.loss, expected.loss)


def test_load_official_state_dict_transposes_the_kernel():
    head = MarginCCSHead(7, 3)
    kernel = torch.randn(3, 7)
    head.load_official_state_dict({"kernel": kernel})
    assert torch.equal(head.weight.detach(), kernel.T)
    with pytest.raises(ValueError, match=r"\(3, 7\)"):
        head.load_official_state_dict({"kernel": kernel.T})
    with pytest.raises(ValueError, match="kernel"):
        head.load_official_state_dict({"weight": kernel.T})


def test_cr_target_formulas():
    """Against values worked out by hand, the edges of each formula included."""
    ccs = torch.tensor([0.8, 0.5, -0.2, 0.25, 0.3], dtype=torch.float64, requires_grad=True)
    nnccs = torch.tensor([0.3, 0.6, -0.5, -1.0, 0.0], dtype=torch.float64)
    # paper, CCS / (NNCCS + 1 + 1e-9): 0.8 / 1.3, 0.5 / 1.6, −0.2 / 0.5; at NNCCS = −1 the
    # denominator is ε alone: 0.25 / 1e-9.
    paper = cr_target(ccs, nnccs)
    expected_paper = [0.6153846149112426, 0.3124999998046875, -0.3999999992, 2.5e8, 0.29999999970000003]
    torch.testing.assert_close(paper, torch.tensor(expected_paper, dtype=torch.float64), rtol=1e-12, atol=0)
    # official, CCS / max(NNCCS, −1e-12): 0.8 / 0.3, 0.5 / 0.6; a negative NNCCS is floored at
    # −1e-12, so −0.2 / −1e-12 = 2e11 and 0.25 / −1e-12 = −2.5e11; NNCCS = 0 divides by zero.
    official = cr_target(ccs, nnccs, "official")
    expected_official = [8 / 3, 5 / 6, 2e11, -2.5e11, float("inf")]
    torch.testing.assert_close(official, torch.tensor(expected_official, dtype=torch.float64), rtol=1e-12, atol=0)
    assert not paper.requires_grad and not official.requires_grad  # a target: no gradient
    with pytest.raises(ValueError, match="formula"):
        cr_target(ccs, nnccs, "ratio")


def test_crfiqa_loss_is_ce_plus_weighted_smooth_l1_on_labelled_rows():
    torch.manual_seed(1)
    head = MarginCCSHead(50, 16, backend="chunked")
    loss_fn = CRFIQALoss(head, alpha=10.0, beta=0.5)
    embeddings = torch.randn(6, 16, requires_grad=True)
    quality = torch.randn(6, 1, requires_grad=True)
    labels = torch.tensor([1, 2, -1, 4, 5, 6])

    total, parts = loss_fn(embeddings, quality, labels)
    out = margin_ccs_loss(embeddings, head.weight, labels, backend="chunked")
    valid = labels >= 0
    cr = out.ccs[valid] / (out.nnccs[valid] + 1 + 1e-9)
    quality_loss = F.smooth_l1_loss(quality[valid, 0], cr, beta=0.5)
    torch.testing.assert_close(parts.ce, out.loss.detach())
    torch.testing.assert_close(parts.quality, quality_loss.detach())
    torch.testing.assert_close(parts.mean_cr, cr.mean())
    torch.testing.assert_close(total, out.loss + 10.0 * quality_loss)

    total.backward()
    # The CR target is detached: the quality loss reaches the quality head only.
    (ce_grad,) = torch.autograd.grad(out.loss, embeddings)
    torch.testing.assert_close(embeddings.grad, ce_grad)
    assert quality.grad[2].item() == 0.0 and quality.grad[valid].abs().sum() > 0


@pytest.mark.parametrize("kwargs, name", [({"alpha": -1.0}, "alpha"), ({"beta": 0.0}, "beta"), ({"cr": "other"}, "cr")])
def test_crfiqa_loss_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CRFIQALoss(MarginCCSHead(4, 3), **kwargs)


def test_crfiqa_loss_rejects_a_quality_of_the_wrong_shape():
    loss_fn = CRFIQALoss(MarginCCSHead(4, 3))
    with pytest.raises(ValueError, match="quality"):
        loss_fn(torch.randn(2, 3), torch.randn(3), torch.tensor([0, 1]))
