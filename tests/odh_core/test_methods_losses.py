"""Hand-computed loss values of the method plug-ins on tiny inputs, and SHC's centre guarantees.

Each expected value is worked out in the comment above it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from odh_core.methods.bdnn import bdnn_similarity, bdnn_terms, reconstruction
from odh_core.methods.dpsh import dpsh_loss
from odh_core.methods.expo import annealed_beta, expo_loss
from odh_core.methods.orthohash import orthocos_loss
from odh_core.methods.shc import (
    class_similarity,
    min_distance_bound,
    semantic_centres,
    similarity_fit,
)
from odh_core.methods.shrewd import knn_kl, relative_distance_loss


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_orthocos_by_hand() -> None:
    # u = (1, 0) has cosine 1/√2 to both codewords (1, 1) and (1, −1); with margin m on the
    # positive (class 0) logit the CE is −log(e^{s(c−m)} / (e^{s(c−m)} + e^{sc})) = log(1 + e^{sm})
    got = orthocos_loss(t([[1, 0]]), t([[1, 1], [1, -1]]), t([[1, 0]]), margin=0.2, scale=8.0)
    assert float(got) == pytest.approx(math.log(1 + math.exp(8 * 0.2)), rel=1e-9)
    # multi-label target y/Σy: both positives get the margin, logits equal → CE = log 2
    both = orthocos_loss(t([[1, 0]]), t([[1, 1], [1, -1]]), t([[1, 1]]), margin=0.2, scale=8.0)
    assert float(both) == pytest.approx(math.log(2), rel=1e-9)


def test_dpsh_by_hand() -> None:
    # θ = ½·u·Uᵀ = ½·(0.5 + 1, 0.5 − 1) = (0.75, −0.25); s = (1, 0):
    # log(1+e^θ) − sθ = log(1 + e^{−0.75}) and log(1 + e^{−0.25}); quantisation
    # mean((u − sign u)²) = ((0.5 − 1)² + 0) / 2 = 0.125, times η = 0.1
    got = dpsh_loss(t([[0.5, -1]]), t([[1, -1], [1, 1]]), t([[1, 0]]), eta=0.1)
    want = (math.log(1 + math.exp(-0.75)) + math.log(1 + math.exp(-0.25))) / 2 + 0.0125
    assert float(got) == pytest.approx(want, rel=1e-9)


def test_bdnn_terms_by_hand() -> None:
    u = t([[1, 0.5], [-1, 0.5]])  # m = 2 rows, K = 2; B = sign = [[1, 1], [−1, 1]]
    terms = bdnn_terms(u)
    # binary: (0.5² + 0.5²)/(2·2) = 0.125
    assert float(terms["binary"]) == pytest.approx(0.125)
    # independence: HHᵀ/m = [[2, 0], [0, 0.5]]/2; minus I → diag(0, −0.75); ½·0.5625
    assert float(terms["independence"]) == pytest.approx(0.28125)
    # balance: H·1 = column sums (0, 1); 1/(2·2)
    assert float(terms["balance"]) == pytest.approx(0.25)
    # similarity, S = [[1, −1], [−1, 1]]: HᵀH/K = [[.625, −.375], [−.375, .625]];
    # ½·(2·.375² + 2·.625²)/2 = 0.265625
    sim = bdnn_similarity(u, t([[1, -1], [-1, 1]]))
    assert float(sim) == pytest.approx(0.265625)


def test_reconstruction_by_hand() -> None:
    dec = torch.nn.Linear(2, 2).double()
    with torch.no_grad():
        dec.weight.copy_(torch.eye(2))
        dec.bias.zero_()
    # x − W·b − c = (1, 2) − (1, −1) = (0, 3): 9 / (2·1)
    with torch.no_grad():
        assert float(reconstruction(t([[1, 2]]), t([[1, -1]]), dec)) == pytest.approx(4.5)


def test_expo_by_hand() -> None:
    # u_0 = u_1 = (1, 1), K = 2, β = 1: (1/K)·Σ tanh·tanh = tanh²(1); dissimilar pair (s = −1)
    # → exp(+tanh²(1)) for both ordered pairs
    got = expo_loss(t([[1, 1], [1, 1]]), t([[1, -1], [-1, 1]]), beta=1.0)
    assert float(got) == pytest.approx(math.exp(math.tanh(1) ** 2))
    # similar pair → exp(−tanh²(1))
    same = expo_loss(t([[1, 1], [1, 1]]), t([[1, 1], [1, 1]]), beta=1.0)
    assert float(same) == pytest.approx(math.exp(-(math.tanh(1) ** 2)))
    assert annealed_beta(1.0, 10.0, 0.5) == pytest.approx(math.sqrt(10))
    assert annealed_beta(1.0, 10.0, 0.0) == pytest.approx(1.0)
    assert annealed_beta(1.0, 10.0, 2.0) == pytest.approx(10.0)


def test_shrewd_relative_distance_by_hand() -> None:
    # h = (1,1), (1,−1), (−1,−1), K = 2: d = ‖Δ‖²/8 → d01 = .5, d02 = 1, d12 = .5, mean 2/3
    # → relative (.75, 1.5, .75); D = (1, 1, 0), mean 2/3 → (1.5, 1.5, 0);
    # squared differences (.5625, 0, .5625), mean .375
    d = t([[0, 1, 1], [1, 0, 0], [1, 0, 0]])
    assert float(relative_distance_loss(t([[1, 1], [1, -1], [-1, -1]]), d)) == pytest.approx(0.375)


def test_knn_kl_by_hand() -> None:
    # h = (0,0), (1,0): ρ = 1, 1; targets (1,1), (−1,−1): ν = √2, 1
    # (K/n)·Σ log(ν/ρ) + log(m/(n−1)) = (2/2)·log √2 + log 2 = 1.5·log 2
    got = knn_kl(t([[0, 0], [1, 0]]), t([[1, 1], [-1, -1]]))
    assert float(got) == pytest.approx(1.5 * math.log(2))


def test_shc_min_distance_bound_by_hand() -> None:
    # K = 16, C = 4: Σ_{i<7} C(16, i) = 14893 < 2^16/4 = 16384 ≤ Σ_{i<8} = 26333 → d = 8
    assert min_distance_bound(16, 4) == 8
    # K = 4, C = 2: 1 + 4 = 5 < 8 ≤ 1 + 4 + 6 = 11 → d = 3
    assert min_distance_bound(4, 2) == 3


def test_shc_class_similarity_by_hand() -> None:
    # one image per class; softmax over the other classes:
    #   class 0 (.5 .3 .2) → (0 .6 .4); class 1 (.1 .8 .1) → (.5 0 .5);
    #   class 2 (.2 .2 .6) → (.5 .5 0)
    # symmetrised: [[0 .55 .45] [.55 0 .5] [.45 .5 0]]; each row's off-diagonal → [−1, 1]
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    s = class_similarity(probs, np.array([0, 1, 2]), 3)
    np.testing.assert_allclose(s, [[1, 1, -1], [1, 1, -1], [-1, 1, 1]])


@pytest.mark.parametrize(("n_classes", "n_bits"), [(4, 16), (10, 64), (40, 16), (10, 32)])
def test_shc_centres_meet_their_minimum_distance(n_classes: int, n_bits: int) -> None:
    rng = np.random.default_rng(n_classes)
    probs = rng.dirichlet(np.ones(n_classes), size=20 * n_classes)
    s = class_similarity(probs, np.arange(20 * n_classes) % n_classes, n_classes)
    centres, info = semantic_centres(s, n_bits, seed=0, n_iters=30)
    assert centres.shape == (n_classes, n_bits) and set(np.unique(centres)) == {-1.0, 1.0}
    c = centres.astype(np.int64)
    dist = (n_bits - c @ c.T) // 2
    achieved = int(dist[np.triu_indices(n_classes, 1)].min())
    assert achieved == info["min_distance"] >= info["required_min_distance"]
    assert info["required_min_distance"] == min_distance_bound(n_bits, n_classes)
    assert info["similarity_fit_mean_abs_error"] == pytest.approx(
        similarity_fit(centres.T.astype(np.float64), s)
    )


def test_dpsh_memory_bank_keeps_the_rows_seen() -> None:
    from odh_core.methods import create_method
    from odh_core.methods.base import MethodSetup, StepInput

    m = create_method("dpsh")
    y = torch.eye(2)[[0, 1, 0, 1]]
    m.setup(
        MethodSetup(
            n_bits=2, n_classes=2, seed=0, images=torch.zeros(4, 1, 4, 4), targets=y,
            n_rows=4, encoder=torch.nn.Identity(),
        )
    )  # fmt: skip
    u = torch.tensor([[1.0, -1.0], [0.5, 0.5]], requires_grad=True)
    loss = m.loss(StepInput(u=u, n_views=1, targets=y[[0, 3]], idx=torch.tensor([0, 3])), 1)
    assert m.seen.tolist() == [True, False, False, True]
    torch.testing.assert_close(m.bank[[0, 3]], u.detach())
    # against the two rows seen: θ = ½·u·Uᵀ, s = [[1, 0], [0, 1]]
    want = dpsh_loss(u.detach(), u.detach(), torch.eye(2), eta=0.1)
    assert float(loss) == pytest.approx(float(want))


def test_hierarchy_distances_by_hand() -> None:
    from indexer.converters.fashion_mnist import CLASS_NAMES, HIERARCHY
    from odh_core.hierarchy import hierarchy_distances

    d = hierarchy_distances(HIERARCHY, CLASS_NAMES)
    idx = {c: i for i, c in enumerate(CLASS_NAMES)}
    # tops share the group at depth 1 of height 2 → 1 − 1/2; root-only ancestors → 1
    assert d[idx["T-shirt/top"], idx["Shirt"]] == 0.5
    assert d[idx["Sandal"], idx["Ankle boot"]] == 0.5
    assert d[idx["Trouser"], idx["Dress"]] == 1.0 and d[idx["Coat"], idx["Sneaker"]] == 1.0
    assert (np.diag(d) == 0).all() and (d == d.T).all()
    with pytest.raises(ValueError, match="cycle"):
        hierarchy_distances({"a": "g", "g": "h", "h": "g"}, ["a"])
    with pytest.raises(ValueError, match="cannot be the parent"):
        hierarchy_distances({"a": "b"}, ["a", "b"])


def test_mahp_by_hand() -> None:
    from odh_core.metrics import mean_average_hierarchical_precision
    from odh_core.packing import pack_bits

    # classes 0, 1 siblings (sim 0.5), class 2 apart (sim 0); one query of class 0 at code 0;
    # database: class 1 at distance 0, class 0 at distance 1, class 2 at distance 2
    sim = np.array([[1, 0.5, 0], [0.5, 1, 0], [0, 0, 1]])
    bits = np.zeros((4, 8), dtype=bool)
    bits[2, 0] = True
    bits[3, :2] = True
    codes = pack_bits(bits)
    q, db = codes[:1], codes[1:]
    # retrieved sims (0.5, 1, 0), ideal (1, 0.5, 0): hP@1 = .5/1, hP@2 = 1.5/1.5, hP@3 = 1
    got = mean_average_hierarchical_precision(q, [0], db, [1, 0, 2], sim, n_bits=8, k=3)
    assert got == pytest.approx((0.5 + 1 + 1) / 3)
    # a tie: class 1 and class 0 both at distance 0 → expected sim at rank 1 is 0.75
    tie = pack_bits(np.zeros((2, 8), dtype=bool))
    got = mean_average_hierarchical_precision(q, [0], tie, [1, 0], sim, n_bits=8, k=1)
    assert got == pytest.approx(0.75)


def test_dataset_info_carries_an_optional_hierarchy() -> None:
    from indexer.converters.fashion_mnist import CLASS_NAMES, HIERARCHY
    from indexer.imageset import DatasetInfo

    info = DatasetInfo("f", CLASS_NAMES, (28, 28), 1, hierarchy=dict(HIERARCHY))
    back = DatasetInfo.from_json(info.to_json())
    assert back.hierarchy == HIERARCHY and back.label_distances() is not None
    plain = DatasetInfo("f", ("a", "b"), (28, 28), 1)
    assert "hierarchy" not in plain.to_json() and plain.label_distances() is None
    with pytest.raises(ValueError, match="cannot be the parent"):
        DatasetInfo("f", ("a", "b"), (28, 28), 1, hierarchy={"a": "b"})


def test_evaluate_adds_mahp_with_a_hierarchy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from indexer.codes import write_code_set
    from indexer.evaluate import evaluate
    from indexer.imageset import INFO_FILE, DatasetInfo, SplitProtocol
    from odh_core.metrics import mean_average_hierarchical_precision
    from odh_core.packing import pack_bits

    names = ("a1", "a2", "b")
    rng = np.random.default_rng(0)
    labels = np.arange(30) % 3
    codes = pack_bits(rng.random((30, 16)) < 0.5)
    split = ["query" if i < 6 else "database" for i in range(30)]
    write_code_set(
        str(tmp_path / "codes"), np.arange(30), codes, 16,
        labels=[[int(c)] for c in labels], splits=split,
    )  # fmt: skip
    for hierarchy, has in (({"a1": "a", "a2": "a"}, True), (None, False)):
        info = DatasetInfo(
            "x", names, (8, 8), 1, protocol=SplitProtocol("p", database_splits=("database",)),
            hierarchy=hierarchy,
        )  # fmt: skip
        (tmp_path / "set").mkdir(exist_ok=True)
        (tmp_path / "set" / INFO_FILE).write_text(__import__("json").dumps(info.to_json()))
        got = evaluate(str(tmp_path / "codes"), str(tmp_path / "set"))
        assert ("mahp_250" in got) == has
        if has:
            sim = 1.0 - info.label_distances()  # type: ignore[operator]
            want = mean_average_hierarchical_precision(
                codes[:6], labels[:6], codes[6:], labels[6:], sim, n_bits=16, k=250
            )
            assert got["mahp_250"] == pytest.approx(want)


def test_mahp_tie_aware_equals_the_average_over_tied_orders() -> None:
    """Oracle: enumerate every database order sorted by Hamming distance (ties in any order)
    and average the plain AHP@k of each."""
    from itertools import permutations

    from odh_core.metrics import mean_average_hierarchical_precision
    from odh_core.packing import hamming_distances, pack_bits

    rng = np.random.default_rng(3)
    sim = np.array([[1, 0.5, 0], [0.5, 1, 0.2], [0, 0.2, 1]])
    for trial in range(5):
        bits = rng.random((8, 8)) < 0.2  # sparse bits: many ties
        codes = pack_bits(bits)
        labels = rng.integers(0, 3, size=8)
        q, db, ql, dl = codes[:2], codes[2:], labels[:2], labels[2:]
        k = 4
        dist = hamming_distances(q, db)
        want = []
        for i in range(2):
            s = sim[ql[i], dl]
            ideal = np.cumsum(np.sort(s)[::-1][:k])
            vals = []
            for order in permutations(range(len(dl))):
                if np.all(np.diff(dist[i][list(order)]) >= 0):
                    got = np.cumsum(s[list(order)][:k])
                    vals.append(np.mean(np.where(ideal > 0, got / np.maximum(ideal, 1e-12), 1)))
            want.append(np.mean(vals))
        got = mean_average_hierarchical_precision(q, ql, db, dl, sim, n_bits=8, k=k)
        assert got == pytest.approx(np.mean(want)), trial


@pytest.mark.parametrize("weak", [False, True])
def test_shrewd_semantic_distances_by_mode(weak: bool) -> None:
    from odh_core.methods import create_method
    from odh_core.methods.base import MethodSetup

    tree = torch.tensor([[0, 0.5, 1], [0.5, 0, 1], [1, 1, 0]])
    m = create_method("shrewd", weak=weak)
    y = torch.eye(3)[[0, 1, 2, 0]]
    m.setup(
        MethodSetup(
            n_bits=8, n_classes=3, seed=0, images=torch.zeros(4, 1, 4, 4), targets=y,
            n_rows=4, encoder=torch.nn.Identity(), label_distance=tree,
        )
    )  # fmt: skip
    d = m.semantic_distance(y)
    if weak:  # pairwise similarity only: 0 for a shared label, else 1 (classes 0 and 1 too)
        assert d[0, 1] == 1.0 and d[0, 3] == 0.0 and d[0, 2] == 1.0
    else:  # the hierarchy: classes 0 and 1 are siblings
        assert d[0, 1] == 0.5 and d[0, 3] == 0.0 and d[0, 2] == 1.0
