import pytest
import torch

from odh_core.binary import (
    ApproxSign,
    EDESign,
    IdentitySTE,
    SignClipSTE,
    binarize_weight,
    ede_t,
    sign,
)
from odh_core.layers import LAYER_CONFIGS, BasicBlock, BinaryActivation, RPReLU, set_ede_progress


def test_sign_zero_is_plus_one() -> None:
    x = torch.tensor([-2.0, -0.0, 0.0, 1e-8, 3.0])
    assert sign(x).tolist() == [-1.0, 1.0, 1.0, 1.0, 1.0]


def _grad(fn: type[torch.autograd.Function], x: list[float], *extra: object) -> list[float]:
    t = torch.tensor(x, requires_grad=True)
    fn.apply(t, *extra).sum().backward()
    return t.grad.tolist()


def test_clip_ste_gradient() -> None:
    assert _grad(SignClipSTE, [-2.0, -1.0, -0.5, 0.0, 1.0, 1.5]) == [0, 1, 1, 1, 1, 0]


def test_approx_sign_gradient() -> None:
    g = _grad(ApproxSign, [-1.5, -0.5, 0.0, 0.25, 0.75, 1.0])
    assert g == pytest.approx([0.0, 1.0, 2.0, 1.5, 0.5, 0.0])


def test_ede_gradient_and_schedule() -> None:
    t = 2.0
    x = [-1.0, 0.0, 0.5]
    expected = [max(1 / t, 1) * t * (1 - torch.tanh(torch.tensor(t * v)) ** 2).item() for v in x]
    assert _grad(EDESign, x, t) == pytest.approx(expected)
    assert ede_t(0.0) == pytest.approx(1e-3) and ede_t(1.0) == pytest.approx(10.0)
    assert ede_t(0.5) == pytest.approx(10 ** ((-3 + 1) / 2))


def test_identity_ste() -> None:
    assert _grad(IdentitySTE, [-3.0, 0.0, 2.0]) == [1.0, 1.0, 1.0]


def test_weight_binarisation_scaled() -> None:
    w = torch.tensor([[0.5, -1.5, 0.25, -0.25], [2.0, 2.0, -2.0, 0.0]], requires_grad=True)
    wb = binarize_weight(w, "scaled")
    expected = torch.tensor([[0.625, -0.625, 0.625, -0.625], [1.5, 1.5, -1.5, 1.5]])
    assert torch.allclose(wb, expected)
    wb.sum().backward()
    # clip STE through sign, scale detached: grad = alpha · 1{|w| ≤ 1}
    assert w.grad.tolist() == [[0.625, 0.0, 0.625, 0.625], [0.0, 0.0, 0.0, 1.5]]


def test_weight_binarisation_irnet_and_xnor() -> None:
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3)
    wb = binarize_weight(w, "irnet", 1.0)
    for row in wb.view(4, -1):
        vals = row.abs().unique()
        assert len(vals) == 1 and torch.log2(vals)[0] == torch.round(torch.log2(vals)[0])
    wx = binarize_weight(w, "xnor")
    assert torch.allclose(wx.abs().view(4, -1).mean(1), w.abs().view(4, -1).mean(1))


def test_rsign_learnable_shift_gets_gradient() -> None:
    act = BinaryActivation(2, LAYER_CONFIGS["reactnet"])
    with torch.no_grad():
        act.shift.copy_(torch.tensor([0.5, -0.5]).view(1, 2, 1, 1))
    x = torch.full((1, 2, 1, 1), 0.25)
    y = act(x)
    assert y.view(-1).tolist() == [-1.0, 1.0]
    y.sum().backward()
    # d/dβ sign(x − β) ≈ −ApproxSign'(x − β): x − β = −0.25 → 1.5, 0.75 → 0.5
    assert act.shift.grad.view(-1).tolist() == pytest.approx([-1.5, -0.5])


def test_rprelu_hand_case() -> None:
    m = RPReLU(1)
    with torch.no_grad():
        m.shift_in.fill_(1.0)
        m.shift_out.fill_(0.5)
    x = torch.tensor([[[[3.0]]], [[[0.0]]]])
    assert m(x).view(-1).tolist() == pytest.approx([2.5, 0.25])


@pytest.mark.parametrize("layer", sorted(LAYER_CONFIGS))
def test_each_variant_block_trains(layer: str) -> None:
    torch.manual_seed(0)
    block = BasicBlock(4, 8, 2, binary=True, cfg=LAYER_CONFIGS[layer])
    set_ede_progress(block, 0.5)
    x = torch.randn(3, 4, 8, 8, requires_grad=True)
    y = block(x)
    assert y.shape == (3, 8, 4, 4)
    y.pow(2).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert block.conv.weight.grad is not None and block.conv.weight.grad.abs().sum() > 0
