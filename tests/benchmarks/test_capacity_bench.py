"""``odh bench capacity``: the whole bench on a tiny seeded set, the tie-aware recall oracle, the
SLO capacity and 1B projection arithmetic, the odh/FAISS ratio targets."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks._capacity_data import CodeSet, make_codes, recall_at_k, true_kth
from benchmarks._capacity_report import (
    RAM_USABLE,
    loaded_blocks,
    merge_rows,
    project,
    quiet_load,
    ratios,
    row_key,
    slo_capacity,
    targets,
)
from benchmarks.capacity import Config, run

REQUIRED = (
    "index_type", "params", "n", "n_bits", "data", "threads", "recall_at_10", "qps_per_core",
    "p50_ms", "p99_ms", "build_s", "ram_bytes_per_code", "disk_bytes_per_code", "source",
)  # fmt: skip
HAVE_USEARCH = importlib.util.find_spec("usearch") is not None


def _config(tmp_path: Path, data: tuple[str, ...], append: bool = False) -> Config:
    sources = ("odh", "faiss", "usearch") if HAVE_USEARCH else ("odh", "faiss")
    return Config(
        n=5000, bits=(64,), data=data, sources=sources, threads=(1, 2), hnsw_m=(8,),
        queries=100, batch=50, batch_s=0.0, singles=5, singles_s=0.01, rounds=1, seed=3,
        cache_dir=str(tmp_path / "cache"), output=str(tmp_path / "out"), append=append,
    )  # fmt: skip


def test_whole_bench_on_tiny_sets_writes_json_md_and_frontiers(tmp_path: Path) -> None:
    assert run(_config(tmp_path, ("clustered",))) == 0
    # a second run with --append adds its rows; the first run's stay
    assert run(_config(tmp_path, ("uniform",), append=True)) == 0
    out = tmp_path / "out"
    result = json.loads((out / "capacity.json").read_text())
    rows = result["rows"]
    assert {r["data"] for r in rows} == {"clustered", "uniform"}
    for r in rows:
        assert set(REQUIRED) <= set(r), r
        assert r["n"] == 5000 and r["n_bits"] == 64 and r["threads"] in (1, 2)
        assert r["qps_per_core"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0
    sources = {r["source"] for r in rows}
    assert sources == ({"odh", "faiss", "usearch"} if HAVE_USEARCH else {"odh", "faiss"})
    # odh measured beside FAISS at every operating point of every type, with the same recall
    # where both are exact (flat, IVF probing every list)
    odh = [r for r in rows if r["source"] == "odh"]
    assert {r["index_type"] for r in odh} == {"flat", "ivf", "hnsw"}
    by_key = {row_key(r): r for r in rows}
    for r in odh:
        ref = by_key[row_key({**r, "source": "faiss"})]
        if r["index_type"] == "flat" or r["params"].get("nprobe", 0) >= r["params"].get("nlist", 1):
            assert r["recall_at_10"] == ref["recall_at_10"] == 1.0
    assert "## odh / FAISS per operating point" in (tmp_path / "out" / "capacity.md").read_text()
    # exact scan is exact; IVF probing every list is exact too
    assert all(r["recall_at_10"] == 1.0 for r in rows if r["index_type"] == "flat")
    ivf = [r for r in rows if r["index_type"] == "ivf"]
    full = [r for r in ivf if r["params"]["nprobe"] >= r["params"]["nlist"]]
    assert full and all(r["recall_at_10"] == 1.0 for r in full)
    # recall grows with nprobe on the same index
    point = ("clustered", 1, "faiss")
    one = [r for r in ivf if (r["data"], r["threads"], r["source"]) == point]
    one.sort(key=lambda r: r["params"]["nprobe"])
    assert [r["params"]["nprobe"] for r in one] == [1, 2, 4, 8, 16, 32, 64, 128]
    assert one[0]["recall_at_10"] < one[-1]["recall_at_10"]
    assert {r["params"]["ef_search"] for r in rows if r["index_type"] == "hnsw"} == {
        16, 32, 64, 128, 256, 512
    }  # fmt: skip
    assert {"machine", "command", "config", "projection_1b", "slo_capacity"} <= set(result)
    assert result["projection_1b"] and all(p["nodes"] >= 1 for p in result["projection_1b"])
    md = (out / "capacity.md").read_text()
    assert "## clustered" in md and "## uniform" in md and "Projection to 1 billion" in md
    for data in ("clustered", "uniform"):
        png = (out / f"capacity_{data}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # the ground truth was cached for the rerun
    assert len(list((tmp_path / "cache").glob("gt-*.npy"))) == 2


def test_recall_counts_ties_at_the_cut_as_hits() -> None:
    # query 0: true 3rd distance 2; an index returning other codes at distance 2 is still right
    # query 1: true 3rd distance 1; the hit at distance 3 is a miss
    dist = np.array([[0, 2, 2], [1, 1, 3]])
    kth = np.array([2, 1])
    assert recall_at_k(dist, kth, 3) == pytest.approx((3 + 2) / 6)
    # a missing hit (usearch pads with inf, FAISS with a huge distance) is a miss
    assert recall_at_k(np.array([[0.0, np.inf]]), np.array([1]), 2) == pytest.approx(0.5)


def test_true_kth_matches_brute_force_with_duplicates(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    db = rng.integers(0, 256, size=(300, 2), dtype=np.uint8)
    db[100:110] = db[0]  # ten exact duplicates: ties everywhere near query 0
    queries = np.concatenate([db[:1], rng.integers(0, 256, size=(9, 2), dtype=np.uint8)])
    codes = CodeSet("uniform", db, queries, {})
    bits = np.unpackbits(db, axis=1)
    qbits = np.unpackbits(queries, axis=1)
    brute = np.sort((qbits[:, None, :] != bits[None, :, :]).sum(axis=2), axis=1)[:, 9]
    assert np.array_equal(true_kth(codes, 10, 0, tmp_path), brute)
    assert true_kth(codes, 10, 0, tmp_path)[0] == 0  # eleven copies of query 0 in the database
    assert np.array_equal(true_kth(codes, 10, 0, None), brute)


def test_real_data_without_an_encoder_tells_the_user_to_run_make_demo(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make demo"):
        make_codes("real", 10, 64, 2, 0, tmp_path, checkpoint=str(tmp_path / "none"))
    with pytest.raises(ValueError, match=r"Config\.data"):
        Config(data=("imagenet",))


def _row(**kw: object) -> dict:
    base = {"data": "clustered", "n": 1_000_000, "n_bits": 64, "index_type": "ivf",
            "params": {"nlist": 4000, "nprobe": 8}, "source": "faiss", "threads": 1,
            "recall_at_10": 0.96, "qps_per_core": 1000.0, "p50_ms": 0.5, "p99_ms": 1.0,
            "build_s": 100.0, "ram_bytes_per_code": 16.0, "disk_bytes_per_code": 12.0}  # fmt: skip
    return base | kw


def test_slo_capacity_and_projection_on_a_hand_case() -> None:
    memory = 64 * 2**30
    rows = [
        _row(),
        _row(recall_at_10=0.90, p99_ms=0.1),  # faster, but below the recall: not eligible
        _row(threads=2, p99_ms=0.5),  # two threads: not a one-core replica
    ]
    (cap,) = slo_capacity(rows, slo_ms=10.0, min_recall=0.95, memory_bytes=memory)
    # latency bound: p99 1 ms at 1M codes, p99 ∝ n → 10 ms at 10M; memory: 48 GiB / 16 B
    assert cap["codes"] == 10_000_000 and cap["bound"] == "latency"
    assert cap["by_memory"] == int(memory * RAM_USABLE / 16)
    p = project(cap, memory, cores=16)
    assert p["codes_per_shard"] == 10_000_000 and p["shards"] == 100
    assert p["nodes"] == 7  # memory needs one node (15 GiB), 100 one-core shards need ceil(100/16)
    assert p["ram_gib_total"] == round(1e9 * 16 / 2**30, 1)
    assert p["build_hours"] == pytest.approx(100 / 1e6 * 1e9 / 7 / 3600, abs=1e-3)
    assert p["qps_per_replica"] == pytest.approx(100.0)  # 10× the codes → a tenth of the QPS
    assert p["p99_ms_per_shard"] == pytest.approx(10.0)
    # HNSW: p99 ∝ ln n, so the memory bound decides
    (h,) = slo_capacity([_row(index_type="hnsw", params={"m": 16, "ef_search": 64},
                              ram_bytes_per_code=100.0)], 10.0, 0.95, memory)  # fmt: skip
    assert h["bound"] == "memory" and h["codes"] == int(memory * RAM_USABLE / 100)
    ph = project(h, memory, cores=16)
    assert ph["qps_per_replica"] == pytest.approx(
        1000 * math.log(1e6) / math.log(h["codes"]), abs=0.1
    )
    # IVF: the quantizer's training (train_s) is paid once, only the adds scale with the codes
    (v,) = slo_capacity([_row(index_type="ivf", params={"nlist": 4000, "nprobe": 8},
                              train_s=60.0)], 10.0, 0.95, memory)  # fmt: skip
    pv = project(v, memory, cores=16)
    assert pv["build_hours"] == pytest.approx((60 + 40 / 1e6 * 1e9 / 7) / 3600, abs=1e-3)


def test_ratio_targets_and_merge() -> None:
    faiss = _row()
    odh = _row(source="odh", qps_per_core=850.0, p50_ms=0.6)
    (r,) = ratios([faiss, odh])
    assert r["qps_ratio"] == pytest.approx(0.85) and r["p50_ratio"] == pytest.approx(1.2)
    lines = targets([faiss, odh], 0.95)
    assert "MISSED" in lines[0] and "MET" in lines[1]
    assert "not measured" in targets([faiss], 0.95)[0]
    # rows of a loaded machine are not judged: the same pair measured at load 9 on 2 CPUs
    loaded = [x | {"loadavg": [9.0, 8.0, 7.0]} for x in (faiss, odh)]
    assert "not measured" in targets(loaded, 0.95, max_load=quiet_load(2))[0]
    assert "MISSED" in targets(loaded, 0.95)[0]  # no load limit: judged
    assert loaded_blocks([*loaded, faiss], quiet_load(2)) == ["clustered 1,000,000 64-bit ivf"]
    assert slo_capacity(loaded, 10.0, 0.95, 2**30, max_load=2.5) == []
    merged = merge_rows([faiss, odh], [_row(qps_per_core=2000.0)])
    assert len(merged) == 2 and merged[0]["qps_per_core"] == 2000.0


def test_cluster_layout_prediction_and_checked_projection() -> None:
    from benchmarks._capacity_cluster import predict_layout, set_checked

    # flat/IVF: half the codes per shard → half the per-query cost → twice the QPS of one copy
    p = predict_layout("ivf", 1_000_000, 2, qps_ref=1000.0, p99_ref_ms=4.0)
    assert p == {"codes_per_shard": 500_000, "slowdown": 0.5, "qps": 2000.0, "p99_ms": 2.0}
    h = predict_layout("hnsw", 1_000_000, 2, qps_ref=1000.0, p99_ref_ms=4.0)
    assert h["qps"] == pytest.approx(1000 * math.log(1e6) / math.log(5e5), abs=0.1)
    with pytest.raises(ValueError, match="nodes"):
        predict_layout("flat", 10, 0, 1.0, 1.0)
    proj = [
        _row(checked_against_cluster=None),
        _row(index_type="hnsw", checked_against_cluster=None),
    ]
    check = {"data": "clustered", "n_bits": 64, "index_type": "ivf", "n": 3000, "nodes": 2,
             "qps_ratio": 0.5, "p99_ratio": 3.0}  # fmt: skip
    out = set_checked(proj, check)
    assert out[0]["checked_against_cluster"] == {"n": 3000, "nodes": 2, "qps_ratio": 0.5,
                                                 "p99_ratio": 3.0}  # fmt: skip
    assert out[1]["checked_against_cluster"] is None


@pytest.mark.e2e
@pytest.mark.slow  # ~50 s: its own 3-node Ray cluster; the default suite keeps test_multinode's
def test_cluster_check_serves_across_two_ray_nodes(tmp_path: Path) -> None:
    """``odh bench capacity --cluster-check`` on a tiny set (a head and two worker nodes, ~1 min;
    its own process, as the multi-node scenario: Ray's local Cluster needs a fresh driver)."""
    import subprocess
    import sys

    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "cluster.cli", "bench", "capacity", "--cluster-check",
         "--n", "3000", "--bits", "64", "--data", "clustered", "--queries", "50",
         "--batch-s", "0.2", "--singles", "10", "--singles-s", "0.5",
         "--output", str(out), "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((out / "capacity.json").read_text())
    c = result["projection_check"]
    assert c["nodes"] == 2 and c["shards"] == 2 and c["served_groups"] == 2 and c["n"] == 3000
    # the served answers are the index's: the same recall as the in-process reference
    assert c["measured"]["recall_at_10"] == c["reference"]["recall_at_10"] >= 0.95
    assert c["predicted"]["qps"] == pytest.approx(2 * c["reference"]["qps"], rel=1e-3)
    assert c["qps_ratio"] == pytest.approx(c["measured"]["qps"] / c["predicted"]["qps"], abs=1e-3)
    assert "Projection check on the local multi-node cluster" in (out / "capacity.md").read_text()
