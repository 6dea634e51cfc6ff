import itertools

import numpy as np
import pytest

from odh_core.metrics import (
    _level_counts,
    _Tables,
    evaluate_codes,
    precision_recall_curves,
    tie_aware_ap,
)
from odh_core.packing import pack_bits


def _ap(rel_sorted: np.ndarray, k: int) -> float:
    top = rel_sorted[:k]
    if top.sum() == 0:
        return 0.0
    cum = np.cumsum(top)
    return float(sum(cum[j] / (j + 1) for j in range(len(top)) if top[j]) / top.sum())


def _brute(dist: np.ndarray, rel: np.ndarray, k: int) -> float:
    vals = []
    for p in itertools.permutations(range(len(dist))):
        order = np.array(p)[np.argsort(dist[list(p)], kind="stable")]
        vals.append(_ap(rel[order], k))
    return float(np.mean(vals))


@pytest.mark.parametrize("trial", range(25))
def test_tie_aware_matches_permutation_average(trial: int) -> None:
    rng = np.random.default_rng(trial)
    n = int(rng.integers(1, 8))
    dist = rng.integers(0, 3, size=n)
    rel = rng.random(n) < 0.5
    tab = _Tables(n)
    cnt, r = _level_counts(dist[None].astype(np.int32), rel[None], 3)
    for k in sorted({1, n, int(rng.integers(1, n + 1))}):
        expected = _brute(dist, rel, k)
        assert tie_aware_ap(cnt, r, k, tab)[0] == pytest.approx(expected, abs=1e-12)
    assert tie_aware_ap(cnt, r, None, tab)[0] == pytest.approx(_brute(dist, rel, n), abs=1e-12)


def test_hand_case_with_ties() -> None:
    # query code 0; database: d=0 relevant, d=1 {relevant, irrelevant}, d=8 irrelevant
    q = pack_bits(np.zeros((1, 8), bool))
    db_bits = np.zeros((4, 8), bool)
    db_bits[1, 0] = db_bits[2, 1] = True
    db_bits[3, :] = True
    db = pack_bits(db_bits)
    m = evaluate_codes(q, np.array([0]), db, np.array([0, 0, 1, 1]), n_bits=8)
    # orders at d=1: rel first → AP (1 + 1)/2 = 1; irrelevant first → (1 + 2/3)/2
    assert m["map_all_tie_aware"] == pytest.approx((1 + (1 + 2 / 3) / 2) / 2)
    assert m["map_all_shuffled"] in (pytest.approx(1.0), pytest.approx((1 + 2 / 3) / 2))
    assert m["p_h2"] == pytest.approx(2 / 3)
    # top-2: order (r, r) → AP 1; (r, n) → R=1, AP 1 → expected 1
    assert m["map_100_tie_aware"] == pytest.approx(m["map_all_tie_aware"])


def test_no_relevant_and_empty_radius_score_zero() -> None:
    q = pack_bits(np.ones((1, 8), bool))
    db = pack_bits(np.zeros((3, 8), bool))
    m = evaluate_codes(q, np.array([5]), db, np.array([0, 1, 2]), n_bits=8)
    assert m["map_all_tie_aware"] == 0.0 and m["p_h2"] == 0.0


def test_last_item_not_dropped_and_multihot() -> None:
    db_bits = np.zeros((3, 8), bool)
    db_bits[1, :2] = True
    db_bits[2, :4] = True  # the only relevant item is ranked last
    qlab = np.array([[0, 1, 0]], bool)
    dlab = np.array([[1, 0, 0], [1, 0, 1], [0, 1, 1]], bool)
    m = evaluate_codes(pack_bits(np.zeros((1, 8), bool)), qlab, pack_bits(db_bits), dlab, n_bits=8)
    assert m["map_all_tie_aware"] == pytest.approx(1 / 3)
    assert m["map_all_shuffled"] == pytest.approx(1 / 3)


def test_shuffled_equals_tie_aware_without_ties() -> None:
    rng = np.random.default_rng(0)
    nq, ndb, k = 1000, 69000, 64
    centres = rng.random((10, k)) < 0.5
    ql, dl = rng.integers(0, 10, nq), rng.integers(0, 10, ndb)

    def codes(lab: np.ndarray) -> np.ndarray:
        return pack_bits(centres[lab] ^ (rng.random((len(lab), k)) < 0.2))

    qc, dc = codes(ql), codes(dl)
    m = evaluate_codes(qc, ql, dc, dl, n_bits=k, seed=0)
    assert m["map_all_tie_aware"] == pytest.approx(m["map_all_shuffled"], abs=5e-3)
    assert 0.5 < m["map_all_tie_aware"] <= m["map_1000_tie_aware"] <= 1.0


def test_precision_recall_curves() -> None:
    rng = np.random.default_rng(1)
    bits = rng.random((30, 16)) < 0.5
    labels = rng.integers(0, 3, 30)
    codes = pack_bits(bits)
    pr = precision_recall_curves(codes[:5], labels[:5], codes, labels, n_bits=16)
    assert len(pr["precision"]) == 17 and pr["recall"][-1] == pytest.approx(1.0)
    # N >= the database and radius K both take every item: precision = the relevant fraction
    relevant = np.mean([(labels == labels[q]).mean() for q in range(5)])
    assert pr["top_n"][-1] >= 30
    assert pr["precision_at_n"][-1] == pytest.approx(relevant)
    assert pr["precision"][-1] == pytest.approx(relevant)
