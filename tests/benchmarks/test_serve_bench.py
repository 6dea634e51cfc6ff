"""The serving benchmark's bookkeeping: proxy modes, pooled rows, targets and the report.

The measurements themselves need servers (``odh bench serve``); these tests feed known samples
through the same row, target and report code."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks._serve_modes import LAYOUTS, ModeSamples, ModeSpec
from benchmarks._serve_report import markdown, proxy_summary, targets
from benchmarks.serve import Config, _rows


def _samples(proxy: str, single_ms: float, qps: float, hops: int) -> ModeSamples:
    return ModeSamples(
        proxy=proxy, placement="ingress", groups=1, hops=hops,
        single_s=[single_ms / 1e3] * 4, batch_s=[0.1, 0.1], batch_queries=512,
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
        ("default", "ingress", 1): [_samples("default", 10.0, 900.0, 1)],
        # two rounds of haproxy: samples pool, QPS is total queries over total seconds
        ("haproxy", "ingress", 1): [
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
    assert lines[0].startswith("default proxy, serve-ingress, groups 1, single query")
    assert lines[0].endswith("MISSED; 1 hops")  # +9 ms > +5 ms
    assert lines[2].endswith("MET; 0 hops")  # +2 ms
    summary = proxy_summary(rows, served)
    assert list(summary) == ["default", "haproxy"]
    assert summary["haproxy"]["mean_p50_added_ms"] == pytest.approx(2.0)
    # only the HTTP entry points are reported, not Ray's own ports
    assert summary["haproxy"]["listeners"] == ["*:8404 haproxy", "127.0.0.1:8765 haproxy"]


def test_markdown_has_a_proxy_column_and_the_winner() -> None:
    served = {("haproxy", "ingress", 1): [_samples("haproxy", 2.0, 1000.0, 0)]}
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
    assert "| haproxy | serve-ingress | 1 | 1 | 0 | 2.00 |" in page
    assert "Fastest single query: **haproxy**" in page
