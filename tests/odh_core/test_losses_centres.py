import math

import numpy as np
import pytest
import torch

from odh_core.centres import SemanticCentres, csq_centres, hadamard, multilabel_centres
from odh_core.losses import aggregation_loss, classification_loss, csq_loss, hash_centre_loss


def test_hash_centre_loss_hand_case() -> None:
    centres = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, -1.0, -1.0]])
    h = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    # cos to c0 = 1, to c1 = 0 → logits 5, 0
    expected = -math.log(math.exp(5) / (math.exp(5) + 1))
    assert hash_centre_loss(h, centres, torch.tensor([0]), tau=0.2).item() == pytest.approx(
        expected
    )
    multi = torch.tensor([[1.0, 1.0]])
    expected_multi = expected - math.log(1 / (math.exp(5) + 1))
    assert hash_centre_loss(h, centres, multi).item() == pytest.approx(expected_multi, rel=1e-5)


def test_hash_centre_loss_gradient_flows() -> None:
    torch.manual_seed(0)
    u = torch.randn(6, 16, requires_grad=True)
    c = torch.where(torch.randn(3, 16) >= 0, 1.0, -1.0).requires_grad_(True)
    loss = hash_centre_loss(torch.tanh(u), c, torch.tensor([0, 1, 2, 0, 1, 2]))
    loss.backward()
    assert u.grad.abs().sum() > 0 and c.grad.abs().sum() > 0


def test_aggregation_loss_identical_codes_is_minus_one() -> None:
    v = torch.tensor([[1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [-1.0, 1.0, 1.0]])
    g = torch.Generator().manual_seed(0)
    assert aggregation_loss(v, v.clone(), n_pos=2, generator=g).item() == pytest.approx(-1.0)


def test_aggregation_loss_hand_case_and_gradients() -> None:
    # one group: student rows e1, e2; teacher rows e1, e2 → m = (.5,.5), z_j = m + a_j(v_j − m)
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    g = torch.Generator().manual_seed(3)
    a = torch.rand(1, 4, 1, generator=torch.Generator().manual_seed(3)) + 1.0
    v = torch.cat([s, t]).detach().view(1, 4, 2)
    m = v.mean(1, keepdim=True)
    z = torch.nn.functional.normalize(m + a * (v - m), dim=2)[0]
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    expected = -sum(float(z[i] @ z[j]) for i, j in pairs) / 6
    loss = aggregation_loss(s, t, n_pos=2, generator=g)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    loss.backward()
    assert s.grad.abs().sum() > 0
    assert t.grad is None  # teacher is detached
    with pytest.raises(ValueError, match="n_pos"):
        aggregation_loss(torch.zeros(3, 2), torch.zeros(3, 2), n_pos=2)


def test_classification_and_csq_loss() -> None:
    logits = torch.tensor([[2.0, 0.0]])
    ce = math.log(1 + math.exp(-2))
    assert classification_loss(logits, torch.tensor([0])).item() == pytest.approx(ce)
    assert classification_loss(logits, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(ce)
    h = torch.tensor([[0.0, 0.5]])
    c = torch.tensor([[1.0, -1.0]])
    # p = (0.5, 0.75), t = (1, 0): BCE = (−log .5 − log .25)/2; quant = ((0−1)² + (.5−1)²)/2
    expected = (math.log(2) + math.log(4)) / 2 + 1e-4 * (1 + 0.25) / 2
    assert csq_loss(h, c).item() == pytest.approx(expected, rel=1e-6)


def test_csq_centres_hadamard_and_random() -> None:
    h = hadamard(8)
    assert (h @ h.T == 8 * np.eye(8)).all()
    c, info = csq_centres(10, 16)
    assert info["kind"] == "hadamard" and c.shape == (10, 16) and info["min_distance"] == 8
    c2, info2 = csq_centres(40, 16, seed=1)
    assert info2["kind"] == "balanced_random" and (c2.sum(axis=1) == 0).all()
    assert info2["min_distance"] >= 1 and info2["mean_distance"] > info2["min_distance"]


def test_multilabel_centres() -> None:
    centres = torch.tensor([[1.0, 1.0, -1.0, -1.0], [1.0, -1.0, 1.0, -1.0]])
    out = multilabel_centres(centres, torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
    assert out[0, 0].item() == 1.0 and out[0, 3].item() == -1.0
    assert set(out[0, 1:3].tolist()) <= {-1.0, 1.0}
    assert torch.equal(out[1], centres[0])


def test_semantic_centres_identity_ste() -> None:
    torch.manual_seed(0)
    mod = SemanticCentres(8, 16)
    w = torch.randn(5, 8, requires_grad=True)
    c = mod(w)
    assert set(c.unique().tolist()) <= {-1.0, 1.0} and c.shape == (5, 16)
    z = mod.mlp(w)
    assert torch.equal(c, torch.where(z >= 0, 1.0, -1.0))
    weights = torch.randn(5, 16)
    (c * weights).sum().backward()
    # identity STE: dL/dz = weights · sigmoid'(z)
    z_leaf = z.detach().requires_grad_(True)
    (torch.sigmoid(z_leaf) * weights).sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    assert mod.mlp[2].bias.grad == pytest.approx(z_leaf.grad.sum(0), rel=1e-5)
