"""``odh build --index-type auto``: choose the index type and its parameters by measurement.

Like autofaiss, on the data the build sees: a seeded sample of the codes (at most
``sample_size``, default 50,000) is indexed by every candidate — ``flat`` (exact), ``ivf`` with
the usual ``nlist`` rule (``indexer.quantizer.default_nlist``), ``hnsw`` with ``M`` 16 and 32 —
and for each the cheapest search setting reaching ``target_recall`` is found by the build's own
search-default measurement (:func:`indexer.search.recommend_search_defaults`, 200 held queries
drawn from the sample, tie-aware recall@10). A batch of those queries is then timed on one
thread (best of ``repeats``) and the fastest candidate meeting the target wins.

Timings on the sample are projected to the full ``n`` before they are compared (the build
indexes ``n`` codes, not the sample): ``flat`` scans every code, so its per-query cost grows as
``n / s``; ``ivf`` at a fixed ``nprobe`` with ``nlist ∝ √n`` scans lists of ``√n`` codes, so as
``√(n / s)``; ``hnsw`` walks O(log n) hops at a fixed ``ef_search``, so as ``ln n / ln s``. These
are the scaling assumptions of ``docs/capacity.md`` (IVF at a fixed nprobe), not measurements at
``n``; a run of ``odh bench capacity`` at the target size checks them. When ``n <= sample_size``
nothing is projected.

Ties: a simpler candidate (order ``flat``, ``ivf``, ``hnsw`` M16, ``hnsw`` M32 — flat is exact,
flat and ivf can delete ids) is kept unless a later one is more than ``PREFER_MARGIN`` times
faster, so that timing noise does not flip the choice between near-equal candidates. Sampling and
queries are seeded; the timings are the only non-deterministic input.

Small sets: ``n <= FLAT_MAX_N`` (10,000) is indexed ``flat`` without measuring. The tie-exact
scan of 10,000 codes costs well under a millisecond per query on one core (the scan kernel reads
``n · n_bits / 8`` bytes: 160 KB at 128 bits), it is exact, needs no training and can delete;
an approximate index cannot save more than that fraction of a millisecond, while measuring the
candidates would cost seconds.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: At most this many codes: indexed flat without measuring (see the module docstring).
FLAT_MAX_N = 10_000
#: Codes sampled for the measurement.
SAMPLE_SIZE = 50_000
#: A later candidate must be this many times faster to replace a simpler one.
PREFER_MARGIN = 1.2
#: HNSW graph degrees tried.
HNSW_MS = (16, 32)
N_QUERIES = 200
K = 10

__all__ = [
    "FLAT_MAX_N",
    "PREFER_MARGIN",
    "SAMPLE_SIZE",
    "AutoChoice",
    "Candidate",
    "choose_index_type",
]


@dataclass(frozen=True)
class Candidate:
    """One measured candidate: type, build params on the sample, the search setting reaching the
    target (or the most expensive one tried), its recall, measured and projected queries/s."""

    index_type: str
    params: dict[str, Any]
    search_defaults: dict[str, Any]
    recall_at_10: float
    meets_target: bool
    qps_sample: float
    qps_projected: float
    build_s: float


@dataclass(frozen=True)
class AutoChoice:
    """The decision of ``--index-type auto`` (recorded in the manifest as ``index.auto_choice``)."""

    index_type: str
    params: dict[str, Any]
    reason: str
    n: int
    sample_n: int
    target_recall: float
    seed: int
    candidates: tuple[Candidate, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["candidates"] = [asdict(c) for c in self.candidates]
        for c in out["candidates"]:
            c["qps_sample"] = round(c["qps_sample"], 1)
            c["qps_projected"] = round(c["qps_projected"], 1)
            c["recall_at_10"] = round(c["recall_at_10"], 4)
            c["build_s"] = round(c["build_s"], 3)
        return out


def _growth(index_type: str, n: int, s: int) -> float:
    """Per-query cost at ``n`` codes over the cost at ``s`` (see the module docstring)."""
    if n <= s:
        return 1.0
    if index_type == "flat":
        return n / s
    if index_type == "ivf":
        return math.sqrt(n / s)
    return math.log(n) / math.log(max(s, 2))


def _time_batch(index: Any, queries: np.ndarray, params: dict[str, Any], repeats: int) -> float:
    """Queries per second of one-thread batch search (best of ``repeats``)."""
    index.search(queries, K, **params)  # warm (scan arrays, numba)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        index.search(queries, K, threads=1, **params)
        best = min(best, time.perf_counter() - t0)
    return len(queries) / max(best, 1e-9)


def _candidates(n_sample: int) -> list[tuple[str, dict[str, Any]]]:
    from indexer.quantizer import default_nlist

    out: list[tuple[str, dict[str, Any]]] = [("flat", {})]
    out.append(("ivf", {"nlist": default_nlist(n_sample)}))
    out.extend(("hnsw", {"M": m}) for m in HNSW_MS)
    return out


def choose_index_type(
    codes: np.ndarray,
    *,
    target_recall: float,
    seed: int = 0,
    sample_size: int = SAMPLE_SIZE,
    flat_max_n: int = FLAT_MAX_N,
    ef_construction: int = 40,
    repeats: int = 3,
) -> AutoChoice:
    """Measure the candidate index types on a seeded sample of ``codes`` (``uint8[n, n_bits/8]``)
    and return the fastest one reaching ``target_recall`` (see the module docstring).

    The returned ``params`` are the build parameters for the full set: for ``ivf`` ``nlist`` is
    left to the build's rule at the full ``n`` (``None``), for ``hnsw`` ``M`` and
    ``ef_construction``. ``target_recall`` 0 means "any": the fastest candidate wins.
    """
    from indexer.index_types.base import check_codes
    from indexer.index_types.registry import create_index_type
    from indexer.search import recommend_search_defaults

    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be uint8[n, n_bits/8], got shape {list(codes.shape)}")
    n_bits = codes.shape[1] * 8
    codes = check_codes(codes, n_bits)
    n = len(codes)
    if n == 0:
        raise ValueError("codes: no codes to choose an index type for")
    if not 0.0 <= target_recall <= 1.0:
        raise ValueError(f"target_recall must be in [0, 1], got {target_recall}")
    if sample_size < 1:
        raise ValueError(f"sample_size must be >= 1, got {sample_size}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if n <= flat_max_n:
        reason = (
            f"{n} codes <= {flat_max_n}: an exact flat scan is sub-millisecond per query, "
            "no candidate measured"
        )
        return AutoChoice("flat", {}, reason, n, 0, target_recall, seed)

    rng = np.random.default_rng(seed)
    s = min(n, sample_size)
    rows = np.sort(rng.choice(n, s, replace=False)) if s < n else np.arange(n)
    sample = np.ascontiguousarray(codes[rows])
    ids = np.arange(s, dtype=np.int64)
    # the same queries recommend_search_defaults draws (same seed, same rule)
    q_rng = np.random.default_rng(seed)
    queries = sample[np.sort(q_rng.choice(s, min(N_QUERIES, s), replace=False))]

    found: list[Candidate] = []
    for index_type, params in _candidates(s):
        t0 = time.perf_counter()
        build_params = dict(params)
        if index_type == "ivf":
            build_params["seed"] = seed
        if index_type == "hnsw":
            build_params["ef_construction"] = ef_construction
        index = create_index_type(index_type, n_bits, **build_params)
        if index.needs_training:
            index.train(sample)
        index.add(sample, ids)
        build_s = time.perf_counter() - t0
        if index.search_params:
            sd, recall = recommend_search_defaults(
                index, sample, target_recall=target_recall, n_queries=N_QUERIES, k=K, seed=seed
            )
            recall = float(recall if recall is not None else 1.0)
        else:
            sd, recall = {}, 1.0
        qps = _time_batch(index, queries, sd, repeats)
        del index
        found.append(
            Candidate(
                index_type=index_type,
                params={k: v for k, v in build_params.items() if k != "seed"},
                search_defaults=sd,
                recall_at_10=recall,
                meets_target=recall >= target_recall,
                qps_sample=qps,
                qps_projected=qps / _growth(index_type, n, s),
                build_s=build_s,
            )
        )
        logger.info(
            "auto index: %s %s on %d codes: %s recall@10 %.3f, %.0f q/s (%.0f at n=%d)",
            index_type, params, s, sd, recall, qps, found[-1].qps_projected, n,
        )  # fmt: skip
    ok = [c for c in found if c.meets_target]  # flat always does
    best = max(ok, key=lambda c: c.qps_projected)
    winner = next(c for c in ok if c.qps_projected * PREFER_MARGIN >= best.qps_projected)
    label = f"{winner.index_type}{winner.params or ''}"
    reason = (
        f"fastest reaching recall@10 >= {target_recall:g} on {s} sampled codes: {label} at "
        f"{winner.search_defaults or 'exact'} ({winner.recall_at_10:.3f}, "
        f"{winner.qps_projected:.0f} q/s projected to {n} codes)"
    )
    if winner is not best:
        reason += (
            f"; kept over {best.index_type}{best.params or ''} ({best.qps_projected:.0f} q/s), "
            f"less than {PREFER_MARGIN:g}x faster"
        )
    # nlist was the sample's: the build applies its own rule at the full n
    params = {k: v for k, v in winner.params.items() if k != "nlist"}
    return AutoChoice(winner.index_type, params, reason, n, s, target_recall, seed, tuple(found))
