"""Timing of one operating point: batched QPS and single-query latency, sources interleaved.

All indexes of one type and build setting (odh's and the plain references) are measured at the
same search parameters in one loop: per round, each source runs its batches and its single
queries in turn (the order rotates every round), so drift on a shared machine hits every source
alike. Batched QPS is queries over wall seconds for batches of ``batch`` queries; it is divided
by the thread count for ``qps_per_core``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from benchmarks._capacity_data import recall_at_k
from benchmarks._capacity_indexes import Built

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """How much to measure per source and operating point."""

    batch: int = 1000
    batch_s: float = 1.0  # repeat the query set until this many seconds have passed
    singles: int = 200
    singles_s: float = 1.0
    rounds: int = 2


def timed_batches(
    built: Built, queries: np.ndarray, k: int, params: dict[str, int], threads: int, budget: Budget
) -> tuple[int, float, np.ndarray]:
    """``(queries answered, wall seconds, distances of the first pass)``."""
    done, wall = 0, 0.0
    first: list[np.ndarray] = []
    while True:
        for start in range(0, len(queries), budget.batch):
            q = queries[start : start + budget.batch]
            t0 = time.perf_counter()
            d = built.search(q, k, params, threads)
            wall += time.perf_counter() - t0
            done += len(q)
            if len(first) * budget.batch < len(queries):
                first.append(np.asarray(d))
        if wall >= budget.batch_s:
            return done, wall, np.concatenate(first)


def timed_singles(
    built: Built,
    queries: np.ndarray,
    k: int,
    params: dict[str, int],
    threads: int,
    budget: Budget,
    offset: int,
) -> list[float]:
    """Seconds of single-query calls, from ``offset`` on, up to the count or time budget."""
    out: list[float] = []
    spent = 0.0
    for i in range(budget.singles):
        j = (offset + i) % len(queries)
        q = queries[j : j + 1]
        t0 = time.perf_counter()
        built.search(q, k, params, threads)
        dt = time.perf_counter() - t0
        out.append(dt)
        spent += dt
        if spent >= budget.singles_s:
            break
    return out


def measure_point(
    builts: Sequence[Built],
    queries: np.ndarray,
    kth: np.ndarray,
    k: int,
    params: dict[str, int],
    threads: int,
    budget: Budget,
) -> list[dict[str, object]]:
    """One row per source at ``params`` and ``threads``, the sources interleaved per round."""
    acc = {
        b.source: {"done": 0, "wall": 0.0, "singles": [], "dist": None} for b in builts
    }  # fmt: skip
    order = list(builts)
    for rnd in range(budget.rounds):
        for built in order[rnd % len(order) :] + order[: rnd % len(order)]:
            a = acc[built.source]
            done, wall, dist = timed_batches(built, queries, k, params, threads, budget)
            a["done"] += done  # type: ignore[operator]
            a["wall"] += wall  # type: ignore[operator]
            if a["dist"] is None:
                a["dist"] = dist
            offset = rnd * budget.singles
            a["singles"] += timed_singles(  # type: ignore[operator]
                built, queries, k, params, threads, budget, offset
            )
    rows: list[dict[str, object]] = []
    for built in builts:
        a = acc[built.source]
        qps = float(a["done"]) / float(a["wall"])  # type: ignore[arg-type]
        ms = np.asarray(a["singles"]) * 1e3
        rows.append(
            {
                "source": built.source,
                "index_type": built.index_type,
                "params": {**built.build_params, **params},
                "threads": threads,
                "recall_at_10": round(recall_at_k(a["dist"], kth, k), 5),  # type: ignore[arg-type]
                "qps": round(qps, 1),
                "qps_per_core": round(qps / threads, 1),
                "p50_ms": round(float(np.percentile(ms, 50)), 5),
                "p99_ms": round(float(np.percentile(ms, 99)), 5),
                "singles": len(ms),
            }
        )
    return rows
