"""The serving benchmark's bookkeeping: proxy modes, pooled rows, targets and the report.

The measurements themselves need servers (``odh bench serve``); these tests feed known samples
through the same row, target and report code."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks._serve_modes import LAYOUTS, ModeSamples, ModeSpec
from benchmarks._serve_report import markdown, proxy_summary, targets
from benchmarks.serve import Config, _rows


def _samples(
    proxy: str, single_ms: float, qps: float, hops: int, fmt: str = "arrow", conc: int = 1
) -> ModeSamples:
    return ModeSamples(
        proxy=proxy, placement="ingress", groups=1, hops=hops, format=fmt, concurrency=conc,
        single_s=[single_ms / 1e3] * 4 if conc == 1 else [], batch_s=[0.1, 0.1], batch_queries=512,
        batch_wall_s=512 / qps, distances=[[0, 1], [2, 3]],
        listeners=["127.0.0.1:8765 haproxy", "*:8404 haproxy", "*:6379 gcs_server"],
    )  # fmt: skip


def test_config_refuses_unknown_proxies_and_no_rounds() -> None:
    assert Config().proxies == ("default", "haproxy", "throughput")
    with pytest.raises(ValueError, match=r"Config\.proxies"):
        Config(proxies=("nginx",))
    with pytest.raises(ValueError, match=r"Config\.rounds"):
        Config(rounds=0)
    with pytest.raises(ValueError, match=r"ModeSpec\.proxy"):
        ModeSpec("nginx", "i", "q.npy", 1, 10, 1, 256, 1.0, 8765, LAYOUTS)


def test_rows_pool_rounds_and_every_row_names_its_proxy() -> None:
    served = {
        ("default", "ingress", 1, "arrow", 1): [_samples("default", 10.0, 900.0, 1)],
        # two rounds of haproxy: samples pool, QPS is total queries over total seconds
        ("haproxy", "ingress", 1, "arrow", 1): [
            _samples("haproxy", 2.0, 1000.0, 0),
            _samples("haproxy", 4.0, 3000.0, 0),
        ],
    }
    kth = np.array([1, 2])
    rows = _rows([0.001] * 10, [0.05] * 4, 1000.0, 0.97, served, kth, k=2, batch=256)
    assert [(r["proxy"], r["mode"], r["batch"]) for r in rows] == [
        ("none", "inprocess", 1), ("none", "inprocess", 256),
        ("default", "serve-ingress", 1), ("default", "serve-ingress", 256),
        ("haproxy", "serve-ingress", 1), ("haproxy", "serve-ingress", 256),
    ]  # fmt: skip
    hap_single, hap_batch = rows[4], rows[5]
    assert hap_single["p50_ms"] == pytest.approx(3.0)  # median of 4×2 ms and 4×4 ms
    assert hap_single["p50_added_ms"] == pytest.approx(2.0)  # in-process single p50 1 ms
    assert hap_batch["qps"] == pytest.approx(1024 / (512 / 1000 + 512 / 3000))
    assert hap_batch["qps_ratio"] == pytest.approx(hap_batch["qps"] / 1000.0)
    # distances [[0,1],[2,3]] against k-th distances [1, 2]: 2/2 and 1/2 within → 0.75
    assert hap_batch["recall_at_10"] == pytest.approx(0.75)

    lines = targets(rows)
    assert lines[0].startswith("default proxy, serve-ingress, groups 1, arrow answer, single query")
    assert lines[0].endswith("MISSED; 1 hops")  # +9 ms > +5 ms
    assert lines[2].endswith("MET; 0 hops")  # +2 ms
    summary = proxy_summary(rows, served)
    assert list(summary) == ["default", "haproxy"]
    assert summary["haproxy"]["mean_p50_added_ms"] == pytest.approx(2.0)
    # only the HTTP entry points are reported, not Ray's own ports
    assert summary["haproxy"]["listeners"] == ["*:8404 haproxy", "127.0.0.1:8765 haproxy"]


def test_markdown_has_a_proxy_column_and_the_winner() -> None:
    served = {("haproxy", "ingress", 1, "arrow", 1): [_samples("haproxy", 2.0, 1000.0, 0)]}
    rows = _rows([0.001] * 4, [0.05] * 2, 1000.0, 1.0, served, np.array([1, 2]), k=2, batch=256)
    result = {
        "command": "odh bench serve", "n": 1000, "n_bits": 64, "shards": 2, "nlist": 16,
        "nprobe": 4, "recall_target": 0.95, "proxies": ["haproxy"], "rounds": 1,
        "machine": {"cpus": 2, "memory_gib": 8}, "loadavg_start": [1.0], "loadavg_end": [1.0],
        "configurations": rows, "proxy_summary": proxy_summary(rows, served),
        "winner": "haproxy", "targets": targets(rows),
    }  # fmt: skip
    page = markdown(result)
    assert "| proxy | mode | groups |" in page
    assert "| haproxy | serve-ingress | 1 | arrow | 1 | 1 | 0 | 2.00 |" in page
    assert "Fastest single query: **haproxy**" in page


def test_formats_and_concurrency_get_their_own_rows() -> None:
    served = {
        ("haproxy", "ingress", 1, fmt, conc): [_samples("haproxy", 2.0, qps, 0, fmt, conc)]
        for fmt, conc, qps in [("arrow", 1, 2000.0), ("json", 1, 1000.0), ("arrow", 2, 3000.0)]
    }
    rows = _rows([0.001] * 4, [0.05] * 2, 4000.0, 1.0, served, np.array([1, 2]), k=2, batch=256)
    batch = {(r["format"], r["concurrency"]): r for r in rows if r["batch"] == 256}
    assert set(batch) == {("arrays", 1), ("arrow", 1), ("json", 1), ("arrow", 2)}
    assert batch["arrow", 2]["qps_ratio"] == pytest.approx(0.75)
    # single queries only where one request was in flight
    assert sorted((r["format"], r["concurrency"]) for r in rows if r["batch"] == 1) == [
        ("arrays", 1), ("arrow", 1), ("json", 1)
    ]  # fmt: skip
    assert any("arrow answer, batch 256 × 2 in flight: 3000 QPS" in t for t in targets(rows))
    with pytest.raises(ValueError, match=r"Config\.formats"):
        Config(formats=("xml",))
    with pytest.raises(ValueError, match=r"Config\.concurrency"):
        Config(concurrency=(0,))
    with pytest.raises(ValueError, match=r"ModeSpec\.formats"):
        ModeSpec("haproxy", "i", "q.npy", 1, 10, 1, 256, 1.0, 8765, LAYOUTS, formats=("xml",))


def test_concurrent_batches_cover_every_batch_once() -> None:
    from benchmarks._serve_modes import timed_concurrent_batches

    queries = np.arange(40, dtype=np.int64)[:, None]
    seen: list[int] = []

    def fn(q: np.ndarray) -> np.ndarray:
        seen.extend(q[:, 0].tolist())
        return q * 2

    # budget 0: exactly one pass over the queries
    lat, done, wall, dists = timed_concurrent_batches([fn, fn, fn], queries, 8, budget_s=0.0)
    assert done == 40 and len(lat) == 5 and wall > 0
    assert sorted(seen) == list(range(40))
    assert dists[:, 0].tolist() == [2 * i for i in range(40)]  # in query order
    # a budget: passes repeat until it is spent; distances stay those of the first pass
    lat, done, wall, dists = timed_concurrent_batches([fn, fn], queries, 8, budget_s=0.05)
    assert done == 8 * len(lat) and done >= 40 and wall >= 0.05 and len(dists) == 40


def test_batches_repeat_passes_until_the_budget() -> None:
    from benchmarks._serve_modes import timed_batches

    queries = np.arange(24, dtype=np.int64)[:, None]
    lat, done, wall, dists = timed_batches(lambda q: q + 1, queries, 8, budget_s=0.0)
    assert (done, len(lat)) == (24, 3) and dists[:, 0].tolist() == list(range(1, 25))
    lat, done, wall, dists = timed_batches(lambda q: q + 1, queries, 8, budget_s=0.05)
    assert done == 8 * len(lat) and done > 24 and wall >= 0.05 and len(dists) == 24
