"""``odh bench capacity --cluster-check``: one measured point of the cost model on a local
multi-node Ray cluster (``projection_check`` in ``capacity.json``).

On this machine, like ``tests/cluster/multinode_scenario.py``: a Ray head node and
``--cluster-nodes`` worker nodes (``ray.cluster_utils.Cluster``), each worker advertising one
``searcher`` unit and one CPU. ``n`` codes of the first ``--data`` kind and ``--bits`` are
built with ``odh build`` (the build itself runs on the cluster) into as many shards as nodes,
with the search default for ``--slo-recall``; then

- **reference**: the same index opened in this process as one index (``indexer.search.
  open_index``: the shards merged into one scan for ``ivf``/``flat``), one thread, at its
  search default: batched QPS, single-query p50/p99, recall@10 on held-out queries;
- **prediction**: the cost model of ``docs/capacity.md`` for the served layout (one shard of
  ``n / nodes`` codes per single-core replica, every query visiting one replica of every shard in
  parallel): QPS of the full copy = ``Q_r / s``, p99 = ``p99_r · s``, with the per-query cost
  ratio ``s = (n / nodes) / n`` (flat, IVF) or ``ln(n / nodes) / ln n`` (HNSW);
- **measured**: the index served over HTTP (``serving.app.start_server``, ``groups = nodes``,
  each searcher group pinned to its own worker node by the ``searcher`` resource), queried by
  codes from this process: batched QPS (batches of at most the API's ``MAX_BATCH``), single
  p50/p99 and recall@10 of the merged answers.

The measured numbers include what the model leaves out — HTTP, the ingress fan-out and merge, and
on one machine the head, proxy and client competing with the nodes for the same cores — so the
ratio measured/predicted says how much of the model's QPS a real deployment keeps.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._capacity_data import CodeSet, recall_at_k

logger = logging.getLogger(__name__)

K = 10

__all__ = ["cluster_check", "predict_layout", "set_checked"]


def predict_layout(
    index_type: str, n: int, nodes: int, qps_ref: float, p99_ref_ms: float
) -> dict[str, Any]:
    """The cost model's QPS and p99 of ``n`` codes split over ``nodes`` single-core replicas,
    from the one-thread reference ``qps_ref`` / ``p99_ref_ms`` measured over all ``n``."""
    if n < 1 or nodes < 1:
        raise ValueError(f"n and nodes must be >= 1, got {n}, {nodes}")
    shard = max(1.0, n / nodes)
    # per-query cost at the shard's size over the cost at n (docs/capacity.md)
    s = math.log(max(shard, 2.0)) / math.log(max(n, 2)) if index_type == "hnsw" else shard / n
    return {
        "codes_per_shard": round(shard),
        "slowdown": round(s, 4),
        "qps": round(qps_ref / s, 1),
        "p99_ms": round(p99_ref_ms * s, 4),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _timed(search: Any, queries: np.ndarray, batch: int, batch_s: float, singles: int,
           singles_s: float) -> dict[str, Any]:  # fmt: skip
    """Batched QPS (the query set repeated for at least ``batch_s``), the distances of the first
    pass, and the latency of up to ``singles`` single queries (at most ``singles_s`` seconds)."""
    done, wall = 0, 0.0
    first: list[np.ndarray] = []
    while True:
        for start in range(0, len(queries), batch):
            q = queries[start : start + batch]
            t0 = time.perf_counter()
            d = search(q)
            wall += time.perf_counter() - t0
            done += len(q)
            if sum(len(x) for x in first) < len(queries):
                first.append(np.asarray(d))
        if wall >= batch_s:
            break
    lat: list[float] = []
    for i in range(singles):
        t0 = time.perf_counter()
        search(queries[i % len(queries) : i % len(queries) + 1])
        lat.append(time.perf_counter() - t0)
        if sum(lat) >= singles_s:
            break
    ms = np.asarray(lat) * 1e3
    return {
        "qps": round(done / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "singles": len(ms),
        "dist": np.concatenate(first),
    }


def _reference(index: Any, queries: np.ndarray, kth: np.ndarray, batch: int, batch_s: float,
               singles: int, singles_s: float) -> dict[str, Any]:  # fmt: skip
    """The in-process one-thread measurement of ``index`` at its search defaults."""
    ref = _timed(lambda q: index.search(q, K)[0], queries, batch, batch_s, singles, singles_s)
    ref["recall_at_10"] = round(recall_at_k(ref.pop("dist"), kth, K), 5)
    return ref


def _wait_complete(client: Any, queries: np.ndarray, deadline_s: float) -> None:
    """Until the server answers with every searcher group (they take a while to start)."""
    deadline = time.monotonic() + deadline_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = client.search(codes=queries[:1], k=K)
            if not result.partial:
                return
            last = f"missing groups {result.missing_groups}"
        except Exception as exc:
            last = exc
        time.sleep(1.0)
    raise RuntimeError(f"cluster check: the served index never answered completely: {last!r}")


def cluster_check(
    codes: CodeSet,
    kth: np.ndarray,
    *,
    index_type: str,
    nodes: int,
    target_recall: float,
    seed: int,
    batch: int,
    batch_s: float,
    singles: int,
    singles_s: float,
    workdir: str | None = None,
) -> dict[str, Any]:
    """Build, measure in process, serve across ``nodes`` local Ray nodes, measure over HTTP;
    returns the ``projection_check`` record (see the module docstring)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from indexer.build import build
    from indexer.codes import write_code_set
    from indexer.search import open_index
    from serving.app import start_server
    from serving.client import ODHClient
    from serving.schemas import MAX_BATCH

    if nodes < 1:
        raise ValueError(f"cluster_nodes must be >= 1, got {nodes}")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    n, n_bits = len(codes.db), codes.db.shape[1] * 8
    tmp = None if workdir else tempfile.TemporaryDirectory(prefix="odh-cluster-check-")
    work = Path(workdir or tmp.name)  # type: ignore[union-attr]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        for _ in range(nodes):
            cluster.add_node(num_cpus=1, resources={"searcher": 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        codes_dir = write_code_set(
            str(work / "codes"), np.arange(n, dtype=np.int64), codes.db, n_bits
        )
        index_dir = str(work / "index")
        t0 = time.perf_counter()
        manifest = build(
            codes_dir, index_dir, n_shards=nodes, index_type=index_type,
            target_recall=target_recall, seed=seed,
        )  # fmt: skip
        build_s = time.perf_counter() - t0
        defaults = dict(manifest.search_defaults)
        logger.info("cluster check: %d codes built in %.1fs, search default %s",
                    n, build_s, defaults)  # fmt: skip

        ref = _reference(open_index(index_dir, manifest=manifest), codes.queries, kth,
                         batch, batch_s, singles, singles_s)  # fmt: skip
        predicted = predict_layout(index_type, n, nodes, ref["qps"], ref["p99_ms"])

        url = start_server(
            index_dir, port=_free_port(), groups=nodes, searcher_resource=1, searcher_cpus=1,
            num_threads=1, timeout_s=60.0,
        )  # fmt: skip
        try:
            with ODHClient(url, timeout=120) as client:
                _wait_complete(client, codes.queries, 180.0)

                def served(q: np.ndarray) -> np.ndarray:
                    res = client.search(codes=q, k=K, require_all=True)
                    return np.array(
                        [[h.distance for h in hits] + [-1] * (K - len(hits))
                         for hits in res.results]
                    )  # fmt: skip

                got = _timed(served, codes.queries, min(batch, MAX_BATCH), batch_s, singles,
                             singles_s)  # fmt: skip
                got["recall_at_10"] = round(recall_at_k(got.pop("dist"), kth, K), 5)
                groups = client.stats().get("groups", [])
        finally:
            serve.shutdown()
    finally:
        ray.shutdown()
        cluster.shutdown()
        if tmp is not None:
            tmp.cleanup()
    return {
        "data": codes.data, "n_bits": n_bits, "index_type": index_type,
        "index_params": dict(manifest.index_params), "search_defaults": defaults, "n": n,
        "nodes": nodes, "shards": nodes, "build_s": round(build_s, 2),
        "served_groups": len(groups),
        "reference": {**ref, "threads": 1, "where": "in process, one index over all n codes"},
        "predicted": predicted,
        "measured": {**got, "where": f"HTTP, {nodes} searcher groups on {nodes} Ray nodes"},
        "qps_ratio": round(got["qps"] / predicted["qps"], 3),
        "p99_ratio": round(got["p99_ms"] / predicted["p99_ms"], 3),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip


def set_checked(projection: list[dict[str, Any]], check: dict[str, Any]) -> list[dict[str, Any]]:
    """``projection_1b`` with ``checked_against_cluster`` set on the rows of the checked point's
    data kind, code length and index type (the ratios of the check; others stay as they were)."""
    out = []
    for p in projection:
        same = (p.get("data"), p.get("n_bits"), p.get("index_type")) == (
            check["data"],
            check["n_bits"],
            check["index_type"],
        )
        if same:
            p = {**p, "checked_against_cluster": {
                "n": check["n"], "nodes": check["nodes"], "qps_ratio": check["qps_ratio"],
                "p99_ratio": check["p99_ratio"]}}  # fmt: skip
        out.append(p)
    return out
