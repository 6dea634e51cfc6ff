"""Serving benchmark: the Serve app over HTTP per proxy mode vs in-process FAISS, same shards.

``odh bench serve [--n 500000] [--bits 64] [--shards 4] [--rounds 2] ...``

1. Synthetic clustered codes (``--n``, ``--bits``) → ``indexer.build.build`` (``--shards`` shards).
2. nprobe = the smallest of a sweep whose tie-aware recall@10 vs brute force is ≥ ``--recall``.
3. In-process ``indexer.search.open_index(...).search``: single queries and batches of ``--batch``.
4. The Serve app on 127.0.0.1 behind each proxy mode (``--proxies``): ``default`` (Serve's HTTP
   proxy actor), ``haproxy`` (``RAY_SERVE_ENABLE_HA_PROXY=1``: HAProxy forwards HTTP to the
   ingress replica) and ``throughput`` (``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``: gRPC between Serve
   actors, direct ingress); in each, 1 and 2 searcher-group deployments (``placement: split``)
   and the shards held by the ingress itself (``placement: ingress``). The same single queries
   and batches are sent over HTTP (``POST /v1/search`` with ``codes``).

Serve reads the proxy variables when it is imported, in every Ray process, so each mode runs in
its own child process with its own Ray instance (``benchmarks._serve_modes``). The modes
alternate over ``--rounds`` rounds (the order rotates every round, the in-process baseline is
measured again at each round) and samples pool across rounds, to cancel drift on a shared
machine. The load generator is bounded (query count and seconds per configuration) and
sequential (one request in flight), so latency is not queueing. Writes ``serve.json``,
``serve.md`` and ``serve_latency.png`` under ``--output``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._machine import command_line, machine_info
from benchmarks._serve_modes import (
    LAYOUTS,
    PROXY_ENV,
    ModeSamples,
    ModeSpec,
    run_mode,
    timed_batches,
    timed_singles,
)
from benchmarks._serve_report import NPROBE_SWEEP, markdown, proxy_summary, targets
from benchmarks.plots import latency_bars
from odh_core.options import option
from serving.config import RESPONSE_FORMATS

logger = logging.getLogger(__name__)


def make_codes(n: int, n_bits: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Database and query codes around the same 16384 random centres, bit flip 0.15."""
    from indexer.synthetic_codes import clustered_codes

    codes = clustered_codes(n + n_queries, n_bits, n_centres=16384, flip=0.15, seed=seed)
    return codes[:n], codes[n:]


def ground_truth(db: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """True k-th Hamming distance of each query (brute force, IndexBinaryFlat)."""
    import faiss

    flat = faiss.IndexBinaryFlat(db.shape[1] * 8)
    flat.add(db)
    d, _ = flat.search(queries, k)
    return d[:, k - 1]


def recall_at_k(dist: np.ndarray, kth: np.ndarray, k: int) -> float:
    """Tie-aware recall@k: a hit counts when its distance ≤ the true k-th distance."""
    d = np.asarray(dist)[:, :k]
    return float(np.mean((d <= kth[:, None]).sum(axis=1) / k))


def _percentiles(samples: list[float]) -> tuple[float, float]:
    arr = np.asarray(samples) * 1e3
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


@dataclass(frozen=True)
class Config:
    """Query latency and throughput: in-process FAISS against the Serve application per proxy."""

    n: int = option(500_000, help="indexed codes")
    bits: int = option(64, help="code length")
    shards: int = option(4, help="index shards")
    nlist: int = option(1024, help="IVF lists")
    queries: int = option(2048, help="held-out query codes")
    singles: int = option(200, help="single queries per configuration and round")
    batch: int = option(256, help="queries per batch request")
    budget_s: float = option(6.0, help="seconds per measurement")
    recall: float = option(0.95, help="recall@10 target of the nprobe sweep")
    proxies: tuple[str, ...] = option(
        tuple(PROXY_ENV), help="proxy modes compared", choices=list(PROXY_ENV)
    )
    formats: tuple[str, ...] = option(
        RESPONSE_FORMATS,
        help="answer formats of the HTTP client (arrow: Arrow IPC, serving.wire; json)",
        choices=list(RESPONSE_FORMATS),
    )
    concurrency: tuple[int, ...] = option(
        (1, 2), help="batch requests in flight at once (one client thread each)"
    )
    rounds: int = option(2, help="rounds over the proxy modes (order rotated each round)")
    seed: int = option(0, help="seed of the synthetic codes")
    port: int = option(8765, help="HTTP port of the served application")
    workdir: str | None = option(None, help="scratch directory (default: a temporary directory)")
    output: str = option(str(Path(__file__).parent / "results"), help="results directory")

    def __post_init__(self) -> None:
        unknown = [p for p in self.proxies if p not in PROXY_ENV]
        if unknown or not self.proxies:
            raise ValueError(f"Config.proxies must be among {list(PROXY_ENV)}, got {self.proxies}")
        if self.rounds < 1:
            raise ValueError(f"Config.rounds must be >= 1, got {self.rounds}")
        if not self.formats or any(f not in RESPONSE_FORMATS for f in self.formats):
            raise ValueError(
                f"Config.formats must be among {list(RESPONSE_FORMATS)}, got {self.formats}"
            )
        if not self.concurrency or min(self.concurrency) < 1:
            raise ValueError(f"Config.concurrency must be >= 1, got {self.concurrency}")


def main(argv: Sequence[str] | None = None) -> int:
    from cluster.cli_config import parse_config

    argv = sys.argv[1:] if argv is None else argv
    return run(parse_config(Config, argv, prog="python -m benchmarks.serve", description=__doc__))


def _build_index(args: argparse.Namespace, db: np.ndarray, work: Path) -> tuple[str, float]:
    """Write the codes and build the sharded index on a short-lived embedded Ray."""
    import ray

    from benchmarks._synthetic_index import build_code_index

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        t0 = time.perf_counter()
        index_dir = build_code_index(
            work, db, args.bits, n_shards=args.shards, nlist=args.nlist, seed=args.seed
        )
        return index_dir, time.perf_counter() - t0
    finally:
        ray.shutdown()


def _rows(
    ip_single: list[float],
    ip_batch: list[float],
    ip_qps: float,
    ip_recall: float,
    served: dict[tuple[str, str, int, str, int], list[ModeSamples]],
    kth: np.ndarray,
    k: int,
    batch: int,
) -> list[dict[str, Any]]:
    """Configuration rows from pooled samples: in-process first, then proxy × layout × answer
    format × batch concurrency (a single-query row where concurrency 1 measured them)."""
    ip_p50, ip_p99 = _percentiles(ip_single)
    ip_single_qps = len(ip_single) / sum(ip_single)
    ip_bp50, ip_bp99 = _percentiles(ip_batch)
    single_base = {"inprocess_p50_ms": ip_p50, "inprocess_qps": ip_single_qps}
    batch_base = {"inprocess_p50_ms": ip_bp50, "inprocess_qps": ip_qps}
    ip = {"proxy": "none", "mode": "inprocess", "groups": 1, "hops": 0, "format": "arrays",
          "concurrency": 1, "recall_at_10": ip_recall}  # fmt: skip
    rows: list[dict[str, Any]] = [
        {**ip, "batch": 1, "p50_ms": ip_p50, "p99_ms": ip_p99, "qps": ip_single_qps,
         **single_base},
        {**ip, "batch": batch, "p50_ms": ip_bp50, "p99_ms": ip_bp99, "qps": ip_qps, **batch_base},
    ]  # fmt: skip
    for (proxy, placement, groups, fmt, conc), runs in served.items():
        mode = "serve" if placement == "split" else "serve-ingress"
        single = [x for r in runs for x in r.single_s]
        lat = [x for r in runs for x in r.batch_s]
        qps = sum(r.batch_queries for r in runs) / sum(r.batch_wall_s for r in runs)
        dists = np.asarray(runs[0].distances, dtype=np.int64)
        recall = recall_at_k(dists, kth[: len(dists)], k)
        bp50, bp99 = _percentiles(lat)
        common = {"proxy": proxy, "mode": mode, "groups": groups, "hops": runs[0].hops,
                  "format": fmt, "concurrency": conc, "recall_at_10": recall}  # fmt: skip
        if single:
            p50, p99 = _percentiles(single)
            rows.append(
                {**common, "batch": 1, "p50_ms": p50, "p99_ms": p99,
                 "qps": len(single) / sum(single), **single_base}
            )  # fmt: skip
        rows.append(
            {**common, "batch": batch, "p50_ms": bp50, "p99_ms": bp99, "qps": qps, **batch_base}
        )
    for r in rows:
        r["p50_added_ms"] = r["p50_ms"] - r["inprocess_p50_ms"]
        r["qps_ratio"] = r["qps"] / r["inprocess_qps"]
    return rows


def run(config: Config) -> int:
    args = argparse.Namespace(**asdict(config))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import faiss

    from indexer.manifest import read_manifest
    from indexer.search import open_index

    # the same FAISS threads in-process as the served searchers have in all (the machine's
    # cores, split over the groups there), so the batched ratio compares like with like
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    load_start = os.getloadavg()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="odh-bench-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    k = 10
    t0 = time.perf_counter()
    db, queries = make_codes(args.n, args.bits, args.queries, args.seed)
    kth = ground_truth(db, queries, k)
    logger.info("codes + ground truth in %.1fs", time.perf_counter() - t0)
    try:
        index_dir, build_s = _build_index(args, db, work)
        del db
        manifest = read_manifest(index_dir)
        group = open_index(index_dir, manifest=manifest)
        sweep = {}
        nprobe = NPROBE_SWEEP[-1]
        for p in NPROBE_SWEEP:
            d, _ = group.search(queries, k, nprobe=p)
            sweep[p] = recall_at_k(d, kth, k)
            logger.info("nprobe %d: recall@10 %.4f", p, sweep[p])
            if sweep[p] >= args.recall:
                nprobe = p
                break

        def inproc(q: np.ndarray) -> np.ndarray:
            return group.search(q, k, nprobe=nprobe, threads=os.cpu_count() or 1)[0]

        single_q = queries[: args.singles]
        np.save(work / "queries.npy", queries)
        ip_single: list[float] = []
        ip_batch: list[float] = []
        ip_done, ip_wall = 0, 0.0
        served: dict[tuple[str, str, int, str, int], list[ModeSamples]] = {}
        proxies = list(args.proxies)
        for rnd in range(args.rounds):
            # in-process baseline again at every round: drift hits both sides
            ip_single += timed_singles(inproc, single_q, args.budget_s)
            lat, done, wall, ip_d = timed_batches(inproc, queries, args.batch, args.budget_s)
            ip_batch += lat
            ip_done, ip_wall = ip_done + done, ip_wall + wall
            order = proxies[rnd % len(proxies) :] + proxies[: rnd % len(proxies)]
            for proxy in order:
                logger.info("round %d/%d: proxy %s", rnd + 1, args.rounds, proxy)
                spec = ModeSpec(
                    proxy=proxy, index_dir=index_dir, queries_file=str(work / "queries.npy"),
                    nprobe=nprobe, k=k, singles=args.singles, batch=args.batch,
                    budget_s=args.budget_s, port=args.port, layouts=LAYOUTS,
                    formats=tuple(args.formats), concurrency=tuple(args.concurrency),
                )  # fmt: skip
                try:
                    samples = run_mode(spec, work)
                except RuntimeError:  # a Serve start that fails once (busy ports, a slow node)
                    logger.exception("proxy %s failed; one more try", proxy)
                    samples = run_mode(spec, work)
                for s in samples:
                    key = (s.proxy, s.placement, s.groups, s.format, s.concurrency)
                    served.setdefault(key, []).append(s)
        ip_recall = recall_at_k(ip_d, kth[: len(ip_d)], k)
        rows = _rows(ip_single, ip_batch, ip_done / ip_wall, ip_recall, served, kth, k, args.batch)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    # rows sorted by proxy within each layout, so the table and the plot read side by side
    order = {p: i for i, p in enumerate(["none", *PROXY_ENV])}
    rows.sort(key=lambda r: (r["mode"] != "inprocess", r["mode"], r["groups"], r["batch"],
                             r["format"], r["concurrency"], order[r["proxy"]]))  # fmt: skip
    summary = proxy_summary(rows, served)
    winner = min(summary, key=lambda p: summary[p]["mean_p50_added_ms"])
    result = {
        "benchmark": "serve",
        "command": command_line(),
        "machine": machine_info(),
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "n": args.n,
        "n_bits": args.bits,
        "shards": args.shards,
        "nlist": int(manifest.nlist),
        "build_s": round(build_s, 2),
        "nprobe": nprobe,
        "nprobe_sweep": {str(p): r for p, r in sweep.items()},
        "recall_target": args.recall,
        "singles": args.singles,
        "budget_s": args.budget_s,
        "proxies": proxies,
        "formats": list(args.formats),
        "concurrency": list(args.concurrency),
        "rounds": args.rounds,
        "proxy_env": {p: dict(PROXY_ENV[p]) for p in proxies},
        "configurations": rows,
        "proxy_summary": summary,
        "winner": winner,
        "targets": targets(rows),
    }
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "serve.md").write_text(markdown(result))
    labelled = [
        {**r, "mode": f"{r['proxy']}\n{r['mode'].replace('serve-', '')}\n"
                      f"{r['format']} ×{r['concurrency']}"}
        for r in rows
    ]  # fmt: skip
    latency_bars(labelled, str(out / "serve_latency.png"), size=(1800, 560))
    logger.info("results written to %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
