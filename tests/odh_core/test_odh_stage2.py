"""ODH stage-2 options: L_hc on the strong view (``hc_strong``), one encoder pass per view
(``separate_views``); the defaults and ``mode="faithful"`` keep the reference stage 2."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from odh_core.losses import aggregation_loss, hash_centre_loss
from odh_core.methods import create_method, method_config
from odh_core.methods.base import MethodSetup, StepInput
from odh_core.train import TrainConfig

K, C, N = 16, 4, 8  # bits, classes, images per view (4 groups of n_pos 2)


def _method(**cfg: Any) -> Any:
    m = create_method("odh", centres="hadamard", **cfg)  # fixed centres: no classifier needed
    m.setup(
        MethodSetup(
            n_bits=K, n_classes=C, seed=0, images=torch.zeros(N, 1, 28, 28),
            targets=torch.zeros(N, C), n_rows=N, encoder=nn.Identity(),
        )
    )  # fmt: skip
    return m


def _step(method: Any, u: torch.Tensor, seed: int = 5) -> StepInput:
    y = torch.nn.functional.one_hot(torch.arange(N) // 2 % C, C).float()
    return StepInput(
        u=u, n_views=2, targets=y, idx=torch.arange(N), extras=method(u, u, u), n_pos=2,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip


def _u() -> torch.Tensor:
    return torch.randn(2 * N, K, generator=torch.Generator().manual_seed(1)).requires_grad_(True)


def test_defaults_are_the_reference_stage2() -> None:
    cfg = method_config("odh")
    assert (cfg.hc_strong, cfg.separate_views, cfg.w_agg) == (False, False, 1e-3)
    assert cfg.reference_deviations() == []
    m = _method()
    assert not m.separate_views
    u = _u()
    got = m.loss(_step(m, u), 2)
    h = torch.tanh(u)
    y = _step(m, u).targets
    expected = hash_centre_loss(h[:N], m.fixed_centres, y, tau=0.2) + 1e-3 * aggregation_loss(
        h[N:], h[:N], n_pos=2, generator=torch.Generator().manual_seed(5)
    )
    assert torch.equal(got, expected)  # the same terms, summed in the same order


@pytest.mark.parametrize("hc_strong", [False, True])
def test_strong_view_gets_hc_gradient_only_when_enabled(hc_strong: bool) -> None:
    m = _method(hc_strong=hc_strong)
    u = _u()
    w, l_hc = m.loss_terms(_step(m, u), 2)["hc"]
    assert w == 1.0
    (grad,) = torch.autograd.grad(l_hc, u)
    assert grad[:N].abs().sum() > 0  # the weak view is always supervised
    assert (grad[N:].abs().sum() > 0) == hc_strong
    if hc_strong:  # the mean of the two views' L_hc
        h, y = torch.tanh(u), _step(m, u).targets
        both = (
            hash_centre_loss(h[:N], m.fixed_centres, y)
            + hash_centre_loss(h[N:], m.fixed_centres, y)
        ) / 2
        torch.testing.assert_close(l_hc, both)


def test_loss_is_the_weighted_sum_of_its_terms() -> None:
    m = _method(hc_strong=True, w_agg=0.5)
    u = _u()
    terms = m.loss_terms(_step(m, u), 2)
    assert set(terms) == {"hc", "agg"} and terms["agg"][0] == 0.5
    total = terms["hc"][1] + 0.5 * terms["agg"][1]
    torch.testing.assert_close(m.loss(_step(m, u), 2), total)
    assert set(m.loss_terms(_step(m, u[:N]), 1)) == {"hc"}


def test_faithful_mode_refuses_the_non_reference_options() -> None:
    for key in ("hc_strong", "separate_views"):
        with pytest.raises(ValueError, match=f"faithful.*{key}"):
            TrainConfig(mode="faithful", method_config={key: True})
    TrainConfig(mode="faithful", method_config={"w_agg": 0.1})  # a weight is not a deviation
    assert TrainConfig(method_config={"hc_strong": True}).parsed_method_config().hc_strong


class _Spy(nn.Module):
    """A tiny encoder with BatchNorm that records the batch size of every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, K), nn.BatchNorm1d(K))
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        return self.net(x)


@pytest.mark.parametrize("separate", [False, True])
def test_stage2_step_encodes_views_separately_when_asked(separate: bool) -> None:
    from odh_core.data import TrainData, labels_to_multihot
    from odh_core.stages import _Rng, _step_loss
    from odh_core.trainmodule import HashTrainModule

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(N, 28, 28, 1), dtype=np.uint8)
    data = TrainData.from_arrays(images, labels_to_multihot(np.arange(N) // 2 % C))
    cfg = TrainConfig(n_bits=K, batch_size=N, method_config={"centres": "hadamard"})
    m = _method(separate_views=separate, hc_strong=True)
    spy = _Spy()
    module = HashTrainModule(spy, m).train()
    rngs = _Rng(torch.Generator().manual_seed(0), rng, torch.Generator().manual_seed(1))
    loss = _step_loss(module, m, data, np.arange(N), 2, cfg, rngs, 0.5)
    assert spy.sizes == ([N, N] if separate else [2 * N])
    loss.backward()
    assert spy.net[1].weight.grad is not None and spy.net[1].weight.grad.abs().sum() > 0


def test_tuple_of_views_is_one_pass_per_view() -> None:
    from odh_core.trainmodule import HashTrainModule

    spy = _Spy().train()
    m = _method()
    module = HashTrainModule(spy, m)
    gen = torch.Generator().manual_seed(2)
    a, b = torch.randn(N, 1, 28, 28, generator=gen), torch.randn(N, 1, 28, 28, generator=gen) * 3
    u_sep, _ = module((a, b), b)
    u_cat, _ = module(torch.cat([a, b]), b)
    torch.testing.assert_close(u_sep[:N], spy.net(a))  # own BatchNorm batch statistics
    assert not torch.allclose(u_sep, u_cat)  # shared statistics differ
