"""Capacity benchmark: index types swept on three kinds of codes, plain references beside.

``odh bench capacity [--n 1000000] [--bits 64 128] [--data clustered uniform real] ...``

Per data kind (``benchmarks._capacity_data``) and code length: ``--n`` database codes and
``--queries`` held-out queries, ground truth by exact scan (cached). Per index type (flat, IVF at
``indexer.quantizer.default_nlist``, HNSW at each ``--hnsw-m``): one plain FAISS index (and
usearch ``b1`` HNSW) as reference, and the project's own adapter (``odh``) when present; each
sweep point (nprobe, efSearch) is measured on every thread count, the sources interleaved
(``benchmarks._capacity_measure``). After each finished (data, bits, type) block the rows are
merged into ``capacity.json`` and the report (``capacity.md``, one frontier PNG per data kind,
SLO capacity, projection to 1B codes) is rewritten, so a run stopped half-way keeps what it
measured; ``--append`` starts from the rows already there (runs across sessions add up).

``--cluster-check``: instead of the grid, one point (``--n`` codes of the first ``--data`` and
``--bits``, ``--cluster-index-type``) served across ``--cluster-nodes`` local Ray nodes, compared
with the cost model's prediction for that layout (``benchmarks._capacity_cluster``); recorded as
``projection_check`` in capacity.json (its rows kept).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks._capacity_data import DATA_KINDS, CodeSet, make_codes, true_kth
from benchmarks._capacity_indexes import (
    INDEX_TYPES,
    Built,
    build_faiss,
    build_odh,
    build_params,
    build_usearch,
    odh_available,
    train_shared_ivf,
)
from benchmarks._capacity_measure import Budget, measure_point
from benchmarks._machine import command_line, machine_info
from odh_core.options import option

logger = logging.getLogger(__name__)

SOURCES = ("odh", "faiss", "usearch")
K = 10


@dataclass(frozen=True)
class Config:
    """Index types × code kinds × sizes: recall, QPS, latency, build and memory per code."""

    n: int = option(1_000_000, help="database codes per data kind")
    bits: tuple[int, ...] = option((64, 128), help="code lengths")
    data: tuple[str, ...] = option(("clustered", "uniform"), help="code kinds", choices=DATA_KINDS)
    index_types: tuple[str, ...] = option(INDEX_TYPES, help="index types", choices=INDEX_TYPES)
    sources: tuple[str, ...] = option(SOURCES, help="odh and/or the references", choices=SOURCES)
    threads: tuple[int, ...] = option((1, 2), help="search thread counts")
    hnsw_m: tuple[int, ...] = option((16, 32), help="HNSW graph degrees M")
    queries: int = option(1000, help="held-out query codes per data kind")
    batch: int = option(1000, help="queries per batch")
    batch_s: float = option(1.0, help="least seconds of batches per source, point and round")
    singles: int = option(200, help="most single queries per source, point and round")
    singles_s: float = option(1.0, help="most seconds of single queries per source and round")
    rounds: int = option(2, help="interleaved rounds per operating point")
    build_threads: int = option(2, help="threads for building the indexes")
    seed: int = option(0, help="seed of codes, augmentations and IVF training")
    checkpoint: str | None = option(None, help="encoder for real codes (default: make demo's)")
    cache_dir: str = option("odh-data/capacity-cache", help="cache of real codes + ground truth")
    append: bool = option(False, help="add to the rows already in capacity.json")
    slo_p99_ms: float = option(10.0, help="latency SLO of the capacity estimate")
    slo_recall: float = option(0.95, help="recall@10 SLO of the capacity estimate")
    node_memory_gib: float | None = option(
        None, help="node RAM (GiB) of the 1B projection (default: this machine's)"
    )
    node_cores: int | None = option(None, help="node cores of the projection (default: this one's)")
    output: str = option(str(Path(__file__).parent / "results"), help="results directory")
    cluster_check: bool = option(
        False, help="instead of the grid: one point served across local Ray nodes vs the cost model"
    )
    cluster_nodes: int = option(2, help="worker nodes (one searcher group each) of --cluster-check")
    cluster_index_type: str = option(
        "ivf", help="index type of --cluster-check", choices=INDEX_TYPES
    )

    def __post_init__(self) -> None:
        from odh_core.packing import check_n_bits

        if self.n < 1 or self.queries < 1 or self.batch < 1:
            raise ValueError("Config.n, Config.queries and Config.batch must be >= 1")
        for b in self.bits:
            check_n_bits(b, "Config.bits")
        for name, values, allowed in (("data", self.data, DATA_KINDS),
                                      ("index_types", self.index_types, INDEX_TYPES),
                                      ("sources", self.sources, SOURCES)):  # fmt: skip
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise ValueError(f"Config.{name} must be among {list(allowed)}, got {values}")
        if not self.threads or min(self.threads) < 1:
            raise ValueError(f"Config.threads must be >= 1, got {self.threads}")
        if not self.hnsw_m or min(self.hnsw_m) < 2:
            raise ValueError(f"Config.hnsw_m must be >= 2, got {self.hnsw_m}")
        if self.rounds < 1 or self.build_threads < 1:
            raise ValueError("Config.rounds and Config.build_threads must be >= 1")
        if self.cluster_nodes < 1:
            raise ValueError(f"Config.cluster_nodes must be >= 1, got {self.cluster_nodes}")
        if self.cluster_index_type not in INDEX_TYPES:
            raise ValueError(
                f"Config.cluster_index_type must be one of {list(INDEX_TYPES)}, "
                f"got {self.cluster_index_type!r}"
            )


def main(argv: Sequence[str] | None = None) -> int:
    from cluster.cli_config import parse_config

    argv = sys.argv[1:] if argv is None else argv
    prog = "python -m benchmarks.capacity"
    return run(parse_config(Config, argv, prog=prog, description=__doc__))


def _builds(
    cfg: Config, index_type: str, codes: CodeSet, params: dict[str, int]
) -> tuple[list[Built], float]:
    """The sources' indexes of one build setting, and the seconds of the shared IVF training
    (0 for the other types; it is part of every IVF ``build_s``, a one-off cost per index)."""
    out = []
    odh = "odh" in cfg.sources and odh_available()
    trained = None
    if index_type == "ivf" and ("faiss" in cfg.sources or odh):
        trained = train_shared_ivf(codes.db, params["nlist"], cfg.seed, cfg.build_threads)
        logger.info("IVF quantizer (nlist %d) trained in %.1fs", params["nlist"], trained.train_s)
    if "faiss" in cfg.sources:
        out.append(build_faiss(index_type, codes.db, params, cfg.build_threads, trained))
    if "usearch" in cfg.sources and index_type == "hnsw":
        out.append(build_usearch(codes.db, params, cfg.build_threads))
    if odh:
        out.append(build_odh(index_type, codes.db, params, cfg.seed, cfg.build_threads, trained))
    for b in out:
        logger.info("%s %s %s built in %.1fs (%.1f B/code RSS, %.1f B/code disk)", b.source,
                    index_type, params, b.build_s, b.ram_bytes / len(codes.db),
                    b.disk_bytes / len(codes.db))  # fmt: skip
    return out, (trained.train_s if trained is not None else 0.0)


def measure_block(cfg: Config, codes: CodeSet, kth: Any, index_type: str) -> list[dict]:
    """Every row of one (data, bits, index type) block."""
    budget = Budget(cfg.batch, cfg.batch_s, cfg.singles, cfg.singles_s, cfg.rounds)
    n = len(codes.db)
    rows: list[dict[str, Any]] = []
    for params in build_params(index_type, n, cfg.hnsw_m):
        builts, train_s = _builds(cfg, index_type, codes, params)
        if not builts:
            continue
        for search_params in builts[0].sweep:
            for threads in cfg.threads:
                point = measure_point(builts, codes.queries, kth, K, search_params, threads, budget)
                for r, b in zip(point, builts, strict=True):
                    r.update(data=codes.data, n=n, n_bits=codes.db.shape[1] * 8,
                             build_s=round(b.build_s, 2), train_s=round(train_s, 2),
                             ram_bytes_per_code=round(b.ram_bytes / n, 2),
                             disk_bytes_per_code=round(b.disk_bytes / n, 2),
                             build_threads=cfg.build_threads,
                             loadavg=[round(x, 2) for x in os.getloadavg()])  # fmt: skip
                    logger.info("%s %s %s thr %d: recall %.3f, %.0f QPS/core, p50 %.3f ms",
                                r["source"], index_type, r["params"], threads, r["recall_at_10"],
                                r["qps_per_core"], r["p50_ms"])  # fmt: skip
                rows += point
        del builts
    return rows


def _portable(config: dict[str, Any]) -> dict[str, Any]:
    """The config with paths under the project written relative to it (no machine's paths)."""
    from benchmarks._capacity_data import REPO_ROOT

    out = dict(config)
    for key in ("output", "cache_dir", "checkpoint"):
        value = out.get(key)
        if value and Path(value).is_absolute() and Path(value).is_relative_to(REPO_ROOT):
            out[key] = str(Path(value).relative_to(REPO_ROOT))
    return out


def write_results(
    cfg: Config,
    rows: list[dict],
    data_info: dict[str, Any],
    command: str | None = None,
    check: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Rewrite capacity.json/.md and the frontier PNGs from ``rows`` (``command``: the command
    line recorded, default this process's; ``check``: the ``projection_check`` record, default
    the one already in capacity.json)."""
    import psutil

    from benchmarks._capacity_report import (
        frontiers,
        loaded_blocks,
        markdown,
        projection_1b,
        quiet_load,
        slo_capacity,
        targets,
    )

    memory = (cfg.node_memory_gib * 2**30 if cfg.node_memory_gib
              else float(psutil.virtual_memory().total))  # fmt: skip
    cores = cfg.node_cores or os.cpu_count() or 1
    max_load = quiet_load(os.cpu_count() or 1)
    capacity = slo_capacity(rows, cfg.slo_p99_ms, cfg.slo_recall, memory, max_load)
    result = {
        "benchmark": "capacity",
        "command": command or command_line(),
        "machine": machine_info(),
        "config": _portable(asdict(cfg)),
        "data_info": data_info,
        "slo": {"p99_ms": cfg.slo_p99_ms, "recall": cfg.slo_recall},
        "rows": rows,
        "quiet_load": max_load,
        "loaded_blocks": loaded_blocks(rows, max_load),
        "targets": targets(rows, cfg.slo_recall, max_load),
        "slo_capacity": capacity,
        "projection_1b": projection_1b(capacity, memory, cores),
    }
    out = Path(cfg.output)
    if check is None and (out / "capacity.json").is_file():
        check = json.loads((out / "capacity.json").read_text()).get("projection_check")
    if check is not None:
        from benchmarks._capacity_cluster import set_checked

        result["projection_check"] = check
        result["projection_1b"] = set_checked(result["projection_1b"], check)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".capacity.json.tmp"
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, out / "capacity.json")
    (out / "capacity.md").write_text(markdown(result))
    frontiers(rows, out)
    return result


def run(config: Config) -> int:
    from benchmarks._capacity_report import merge_rows

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path(config.output)
    rows: list[dict[str, Any]] = []
    data_info: dict[str, Any] = {}
    command = None
    if config.append and (out / "capacity.json").is_file():
        old = json.loads((out / "capacity.json").read_text())
        rows, data_info = old.get("rows", []), old.get("data_info", {})
        # the rows kept come from earlier commands: record them all, oldest first
        command = " ; ".join(c for c in (old.get("command"), command_line()) if c)
    cache = Path(config.cache_dir)
    if not cache.is_absolute():
        from benchmarks._capacity_data import REPO_ROOT

        cache = REPO_ROOT / cache
    if config.cluster_check:
        return run_cluster_check(config, rows, data_info, command, cache)
    if "odh" in config.sources and not odh_available():
        logger.warning("indexer.index_types is absent: no odh rows, references only")
    for data in config.data:
        for n_bits in config.bits:
            t0 = time.perf_counter()
            codes = make_codes(data, config.n, n_bits, config.queries, config.seed, cache,
                               config.checkpoint)  # fmt: skip
            kth = true_kth(codes, K, config.seed, cache)
            data_info[data] = codes.info
            logger.info("%s %d-bit: %d codes + ground truth in %.1fs", data, n_bits, config.n,
                        time.perf_counter() - t0)  # fmt: skip
            for index_type in config.index_types:
                block = measure_block(config, codes, kth, index_type)
                rows = merge_rows(rows, block)
                write_results(config, rows, data_info, command)
                logger.info("%s %d-bit %s: %d rows written", data, n_bits, index_type, len(block))
    return 0


def run_cluster_check(
    config: Config,
    rows: list[dict[str, Any]],
    data_info: dict[str, Any],
    command: str | None,
    cache: Path,
) -> int:
    """``--cluster-check``: measure the point (``benchmarks._capacity_cluster``) and record it as
    ``projection_check``, keeping the rows already in capacity.json."""
    from benchmarks._capacity_cluster import cluster_check

    out = Path(config.output)
    if (out / "capacity.json").is_file() and not rows:
        old = json.loads((out / "capacity.json").read_text())
        rows, data_info = old.get("rows", []), old.get("data_info", {})
        command = " ; ".join(c for c in (old.get("command"), command_line()) if c)
    data, n_bits = config.data[0], config.bits[0]
    codes = make_codes(data, config.n, n_bits, config.queries, config.seed, cache,
                       config.checkpoint)  # fmt: skip
    kth = true_kth(codes, K, config.seed, cache)
    data_info.setdefault(data, codes.info)
    check = cluster_check(
        codes, kth, index_type=config.cluster_index_type, nodes=config.cluster_nodes,
        target_recall=config.slo_recall, seed=config.seed, batch=config.batch,
        batch_s=config.batch_s, singles=config.singles, singles_s=config.singles_s,
    )  # fmt: skip
    logger.info(
        "cluster check: predicted %.0f QPS, measured %.0f (ratio %.3f); p99 %.3f vs %.3f ms",
        check["predicted"]["qps"], check["measured"]["qps"], check["qps_ratio"],
        check["predicted"]["p99_ms"], check["measured"]["p99_ms"],
    )  # fmt: skip
    write_results(config, rows, data_info, command, check)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
