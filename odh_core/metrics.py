"""Retrieval metrics on packed binary codes (ALGORITHMS.md §4).

Ranking is by Hamming distance; an item is relevant when it shares a label with the query.
AP_q@k = (1/R_q) Σ_{j ≤ k, rel(j)} P@j, R_q = relevant items inside the top k (R_q = 0 → AP 0);
the last database item is never dropped.

Tie-aware AP is the *exact expectation* of AP over uniformly random orders inside each distance
level, computed from per-level counts. For a level of n items, r relevant, with N items and R
relevant ranked before it, the item at in-level position i (global position N + i) is relevant with
probability r/n, and given that, the i − 1 items before it in the level hold (i−1)(r−1)/(n−1)
relevant items in expectation, so the level adds

    (r/n) Σ_{i=1..n} (R + 1 + (i−1)(r−1)/(n−1)) / (N + i) = (r/n) [(R+1)·A + (r−1)/(n−1)·B],
    A = H(N+n) − H(N),  B = Σ (i−1)/(N+i) = n − (N+1)·A   (H = harmonic numbers).

With a cut-off k that splits a level (m = k − N of its n items kept), R_q = R + X where X is
hypergeometric(n, r, m); the levels above are independent of X, so
E[AP] = Σ_x P(X=x) · (S_above + E[S_level | X=x]) / (R + x), with E[S_level | X=x] given by the same
formula on the m kept positions holding x relevant items.
Everything is computed in query blocks; no queries × database float64 matrix is ever built.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from odh_core.packing import hamming_distances

logger = logging.getLogger(__name__)

_BLOCK_ELEMS = 1 << 22  # queries × database entries per block


def _check_inputs(
    query_codes: np.ndarray,
    query_labels: np.ndarray,
    db_codes: np.ndarray,
    db_labels: np.ndarray,
    n_bits: int,
) -> tuple[np.ndarray, np.ndarray]:
    for name, codes in (("query_codes", query_codes), ("db_codes", db_codes)):
        if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] * 8 != n_bits:
            raise ValueError(
                f"{name} must be uint8[n, {n_bits // 8}], got {codes.dtype}{codes.shape}"
            )
    ql, dl = np.asarray(query_labels), np.asarray(db_labels)
    if ql.shape[0] != query_codes.shape[0]:
        raise ValueError(f"query_labels has {ql.shape[0]} rows, query_codes {query_codes.shape[0]}")
    if dl.shape[0] != db_codes.shape[0]:
        raise ValueError(f"db_labels has {dl.shape[0]} rows, db_codes {db_codes.shape[0]}")
    if ql.ndim != dl.ndim or ql.ndim not in (1, 2):
        raise ValueError("labels must both be int[n] or both multi-hot [n, C]")
    if ql.ndim == 2 and ql.shape[1] != dl.shape[1]:
        raise ValueError(f"label widths differ: {ql.shape[1]} vs {dl.shape[1]}")
    return ql, dl


def _relevance(ql: np.ndarray, dl: np.ndarray) -> np.ndarray:
    if ql.ndim == 1:
        return ql[:, None] == dl[None, :]
    return (ql.astype(np.float32) @ dl.astype(np.float32).T) > 0


def _level_counts(
    dist: np.ndarray, rel: np.ndarray, n_levels: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per query and distance level: item counts and relevant counts, each int64[B, n_levels]."""
    b = dist.shape[0]
    flat = (dist.astype(np.int64) + np.arange(b, dtype=np.int64)[:, None] * n_levels).ravel()
    n = np.bincount(flat, minlength=b * n_levels).reshape(b, n_levels)
    r = np.bincount(flat, weights=rel.ravel(), minlength=b * n_levels).reshape(b, n_levels)
    return n.astype(np.int64), np.rint(r).astype(np.int64)


class _Tables:
    """Harmonic numbers and log-factorials up to the database size."""

    def __init__(self, n: int) -> None:
        i = np.arange(1, n + 1, dtype=np.float64)
        self.harmonic = np.concatenate([[0.0], np.cumsum(1.0 / i)])
        self.logfact = np.concatenate([[0.0], np.cumsum(np.log(i))])

    def log_comb(self, a: np.ndarray | int, b: np.ndarray) -> np.ndarray:
        return self.logfact[a] - self.logfact[b] - self.logfact[np.asarray(a) - b]


def _level_sums(
    n: np.ndarray, r: np.ndarray, n_before: np.ndarray, r_before: np.ndarray, tab: _Tables
) -> np.ndarray:
    """Expected Σ rel(j)·P@j over a level of n items, r relevant (see module doc)."""
    a = tab.harmonic[n_before + n] - tab.harmonic[n_before]
    b = n - (n_before + 1) * a
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.where(n > 1, (r - 1) / np.maximum(n - 1, 1), 0.0)
        val = np.where(n > 0, r / np.maximum(n, 1) * ((r_before + 1) * a + coef * b), 0.0)
    return val


def tie_aware_ap(n: np.ndarray, r: np.ndarray, k: int | None, tab: _Tables) -> np.ndarray:
    """Exact expected AP@k per query from level counts ``n``, ``r`` (int64[B, levels])."""
    n_before = np.cumsum(n, axis=1) - n
    r_before = np.cumsum(r, axis=1) - r
    total = n.sum(axis=1)
    contrib = _level_sums(n, r, n_before, r_before, tab)
    if k is None:
        k = int(total.max(initial=0))
    full = (n_before + n) <= k
    s_above = (contrib * full).sum(axis=1)
    r_above = (r * full).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ap = np.where(r_above > 0, s_above / np.maximum(r_above, 1), 0.0)
    split = (n_before < k) & (n_before + n > k)
    for q, lvl in zip(*np.nonzero(split), strict=True):
        nn, rr, nb, rb = (
            int(n[q, lvl]),
            int(r[q, lvl]),
            int(n_before[q, lvl]),
            int(r_before[q, lvl]),
        )
        ap[q] = _split_level_ap(nn, rr, k - nb, nb, rb, float(s_above[q]), tab)
    return ap


def _split_level_ap(
    nn: int, rr: int, m: int, nb: int, rb: int, s_above: float, tab: _Tables
) -> float:
    """Expected AP when only the first m of a level's nn items (rr relevant) fall inside top k."""
    lo, hi = max(0, m - (nn - rr)), min(rr, m)
    x = np.arange(lo, hi + 1, dtype=np.int64)
    logp = tab.log_comb(rr, x) + tab.log_comb(nn - rr, m - x) - tab.log_comb(nn, np.int64(m))
    p = np.exp(logp)
    a = tab.harmonic[nb + m] - tab.harmonic[nb]
    b = m - (nb + 1) * a
    coef = (x - 1) / (m - 1) if m > 1 else np.zeros_like(x, dtype=np.float64)
    s_level = x / m * ((rb + 1) * a + coef * b)
    denom = rb + x
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(denom > 0, (s_above + s_level) / np.maximum(denom, 1), 0.0)
    return float((p * terms).sum())


def _shuffled_ap(dist: np.ndarray, rel: np.ndarray, ks: list[int | None]) -> list[np.ndarray]:
    """AP@k for a fixed order: stable sort by distance of an already shuffled database."""
    # uint16 keeps numpy's radix sort for the stable sort and holds every distance 0…K of any
    # code length in use (a uint8 cast wrapped them at K ≥ 256 bits)
    keys = dist.astype(np.uint16) if int(dist.max(initial=0)) <= 0xFFFF else dist
    order = np.argsort(keys, axis=1, kind="stable")
    rel_sorted = np.take_along_axis(rel, order, axis=1)
    cum = np.cumsum(rel_sorted, axis=1, dtype=np.int64)
    pos = np.arange(1, rel.shape[1] + 1, dtype=np.float64)
    prec = np.where(rel_sorted, cum / pos, 0.0)
    out = []
    for k in ks:
        kk = rel.shape[1] if k is None else min(k, rel.shape[1])
        r_q = cum[:, kk - 1]
        s = prec[:, :kk].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out.append(np.where(r_q > 0, s / np.maximum(r_q, 1), 0.0))
    return out


def _block_rows(n_db: int) -> int:
    return max(1, _BLOCK_ELEMS // max(1, n_db))


def evaluate_codes(
    query_codes: np.ndarray,
    query_labels: np.ndarray,
    db_codes: np.ndarray,
    db_labels: np.ndarray,
    *,
    n_bits: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate packed codes: tie-aware mAP@ALL/@1000/@100, seeded-shuffle mAP@ALL, P@H≤2."""
    ql, dl = _check_inputs(query_codes, query_labels, db_codes, db_labels, n_bits)
    n_q, n_db = query_codes.shape[0], db_codes.shape[0]
    if n_q == 0 or n_db == 0:
        raise ValueError(f"need at least one query and one database item, got {n_q} and {n_db}")
    perm = np.random.default_rng(seed).permutation(n_db)
    db_shuf, dl_shuf = np.ascontiguousarray(db_codes[perm]), dl[perm]
    tab = _Tables(n_db)
    levels = n_bits + 1
    acc = {"all": [], "1000": [], "100": [], "shuf": [], "ph2": []}
    rows = _block_rows(n_db)
    for start in range(0, n_q, rows):
        stop = min(n_q, start + rows)
        dist = hamming_distances(query_codes[start:stop], db_shuf)
        rel = _relevance(ql[start:stop], dl_shuf)
        n, r = _level_counts(dist, rel, levels)
        acc["all"].append(tie_aware_ap(n, r, None, tab))
        acc["1000"].append(tie_aware_ap(n, r, 1000, tab))
        acc["100"].append(tie_aware_ap(n, r, 100, tab))
        acc["shuf"].append(_shuffled_ap(dist, rel, [None])[0])
        n2, r2 = n[:, :3].sum(axis=1), r[:, :3].sum(axis=1)
        acc["ph2"].append(np.where(n2 > 0, r2 / np.maximum(n2, 1), 0.0))
    mean = {key: float(np.concatenate(v).mean()) for key, v in acc.items()}
    return {
        "map_all_tie_aware": mean["all"],
        "map_all_shuffled": mean["shuf"],
        "map_1000_tie_aware": mean["1000"],
        "map_100_tie_aware": mean["100"],
        "p_h2": mean["ph2"],
        "n_queries": int(n_q),
        "n_database": int(n_db),
        "n_bits": int(n_bits),
        "seed": int(seed),
    }


def precision_recall_curves(
    query_codes: np.ndarray,
    query_labels: np.ndarray,
    db_codes: np.ndarray,
    db_labels: np.ndarray,
    *,
    n_bits: int,
    top_n: tuple[int, ...] = (1, 10, 50, 100, 500, 1000),
) -> dict[str, list[float]]:
    """Mean precision/recall at Hamming radius 0…K and tie-aware (expected) precision@N."""
    ql, dl = _check_inputs(query_codes, query_labels, db_codes, db_labels, n_bits)
    n_q, n_db = query_codes.shape[0], db_codes.shape[0]
    levels = n_bits + 1
    prec_sum, rec_sum = np.zeros(levels), np.zeros(levels)
    pn_sum = np.zeros(len(top_n))
    rows = _block_rows(n_db)
    for start in range(0, n_q, rows):
        stop = min(n_q, start + rows)
        dist = hamming_distances(query_codes[start:stop], db_codes)
        n, r = _level_counts(dist, _relevance(ql[start:stop], dl), levels)
        cn, cr = np.cumsum(n, axis=1), np.cumsum(r, axis=1)
        tot = cr[:, -1:]
        prec_sum += np.where(cn > 0, cr / np.maximum(cn, 1), 0.0).sum(axis=0)
        rec_sum += np.where(tot > 0, cr / np.maximum(tot, 1), 0.0).sum(axis=0)
        n_before = cn - n
        for j, top in enumerate(top_n):
            kk = min(top, n_db)
            m = np.clip(kk - n_before, 0, n)
            expected = (m * r / np.maximum(n, 1)).sum(axis=1)
            pn_sum[j] += (expected / kk).sum()
    return {
        "radius": list(range(levels)),
        "precision": (prec_sum / n_q).tolist(),
        "recall": (rec_sum / n_q).tolist(),
        "top_n": list(top_n),
        "precision_at_n": (pn_sum / n_q).tolist(),
    }


def _single_classes(labels: np.ndarray, name: str) -> np.ndarray:
    """Class ids of int[n] labels or of single-label multi-hot rows."""
    arr = np.asarray(labels)
    if arr.ndim == 1:
        return arr.astype(np.int64)
    if arr.ndim == 2:
        hot = arr > 0
        if (hot.sum(axis=1) != 1).any():
            raise ValueError(f"{name}: mAHP needs exactly one label per item")
        return hot.argmax(axis=1).astype(np.int64)
    raise ValueError(f"{name} must be int[n] or multi-hot [n, C], got shape {arr.shape}")


def mean_average_hierarchical_precision(
    query_codes: np.ndarray,
    query_labels: np.ndarray,
    db_codes: np.ndarray,
    db_labels: np.ndarray,
    similarity: np.ndarray,
    *,
    n_bits: int,
    k: int = 250,
) -> float:
    """mAHP@k (the SHREWD papers' measure, after Deng, Berg & Fei-Fei 2011).

    With label similarity ``similarity[C, C]`` (1 − normalised hierarchy distance), the
    hierarchical precision at rank j is hP@j = Σ_{i ≤ j} sim(q, r_i) / the same sum under the best
    ordering (the database sorted by similarity to q); AHP@k = (1/k)·Σ_{j ≤ k} hP@j, averaged over
    queries. Tie-aware: inside a Hamming distance level every order is equally likely, so an item
    at a position of that level contributes the level's mean similarity in expectation (exact,
    as hP is linear in the similarities).
    """
    qc = _single_classes(query_labels, "query_labels")
    dc = _single_classes(db_labels, "db_labels")
    sim = np.asarray(similarity, dtype=np.float64)
    n_classes = sim.shape[0]
    if sim.shape != (n_classes, n_classes):
        raise ValueError(f"similarity must be square [C, C], got {sim.shape}")
    if len(qc) != len(query_codes) or len(dc) != len(db_codes):
        raise ValueError("labels and codes must have the same number of rows")
    if max(qc.max(initial=0), dc.max(initial=0)) >= n_classes:
        raise ValueError(f"labels exceed the {n_classes} classes of the similarity matrix")
    n_db = len(db_codes)
    if len(qc) == 0 or n_db == 0:
        raise ValueError("need at least one query and one database item")
    kk = min(k, n_db)
    # the ideal cumulative similarity at ranks 1..kk per query class
    db_counts = np.bincount(dc, minlength=n_classes)
    ideal = np.zeros((n_classes, kk))
    for c in range(n_classes):
        order = np.argsort(-sim[c], kind="stable")
        seq = np.repeat(sim[c, order], db_counts[order])[:kk]
        ideal[c] = np.cumsum(seq)
    levels = n_bits + 1
    positions = np.arange(1, kk + 1)
    total = 0.0
    rows = _block_rows(n_db)
    for start in range(0, len(qc), rows):
        stop = min(len(qc), start + rows)
        dist = hamming_distances(query_codes[start:stop], db_codes).astype(np.int64)
        for b in range(stop - start):
            q = qc[start + b]
            n = np.bincount(dist[b], minlength=levels)
            s = np.bincount(dist[b], weights=sim[q, dc], minlength=levels)
            cum_n = np.cumsum(n)
            lvl = np.searchsorted(cum_n, positions, side="left")  # level holding rank j
            before_n = cum_n[lvl] - n[lvl]
            before_s = np.cumsum(s)[lvl] - s[lvl]
            got = before_s + (positions - before_n) * s[lvl] / np.maximum(n[lvl], 1)
            hp = np.where(ideal[q] > 0, got / np.maximum(ideal[q], 1e-12), 1.0)
            total += float(hp.mean())
    return total / len(qc)
