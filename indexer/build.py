"""Build a sharded index of one index type (``ivf``, ``hnsw``, ``flat``): for ``ivf`` one quantizer
trained once; Ray tasks fill the shards; the search defaults for a target recall are measured on
the built index; the manifest is written last.

Builds are resumable: a rerun with the same codes and configuration reuses the trained quantizer
and every finished shard (see :mod:`indexer.build_state`) and builds only what is missing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa

from indexer import storage
from indexer.build_state import build_key, finished_shard, quantizer_ok, write_state
from indexer.build_steps import fail_shard, run_tasks, same_index, with_search_defaults
from indexer.codes import code_arrays, read_codes, read_encode_info
from indexer.index_types.registry import list_index_types, make_params
from indexer.manifest import (
    Manifest,
    ShardEntry,
    current_generation,
    gen_dir,
    next_generation,
    read_manifest,
    write_manifest,
)
from indexer.quantizer import QUANTIZERS, default_nlist, list_quantizers, train_quantizer
from indexer.shard_io import SHARD_TASK_CPUS, fill_shard, meta_file, shard_file
from indexer.shards import shard_of
from odh_core.options import option

logger = logging.getLogger(__name__)

QUANTIZER_FILE = "quantizer.faissbin"
META_COLUMNS = ("id", "code", "key", "label")
META_TYPES = {"key": pa.string(), "label": pa.list_(pa.int32())}

__all__ = [
    "QUANTIZER_FILE",
    "BuildConfig",
    "build",
    "default_nlist",
    "meta_file",
    "meta_table",
    "shard_file",
    "train_quantizer",
]


AUTO = "auto"


def build_index_types() -> list[str]:
    """What ``--index-type`` takes: every index type, and ``auto`` (chosen by measurement)."""
    return [*list_index_types(), AUTO]


@dataclass(frozen=True)
class BuildConfig:
    """Parameters of one index build.

    ``index_type``: ``ivf`` (inverted lists over a binary k-means quantizer: ``nlist``,
    ``quantizer``, ``hnsw_m``, ``train_size``, ``seed``, ``niter``), ``hnsw`` (a graph per shard:
    ``graph_m``, ``ef_construction``), ``flat`` (exact) or ``auto`` (the type chosen by
    measurement on a sample of at most ``auto_sample`` codes, see ``indexer.build_auto``; the
    decision is recorded as the manifest's ``auto_choice``). ``quantizer``: ``"flat"`` (exact
    assignment) or ``"hnsw"`` (an ``IndexBinaryHNSW`` over the centroids, for large ``nlist``).
    ``target_recall``: the build measures the cheapest search parameter (``nprobe`` /
    ``ef_search``) reaching this tie-aware recall@10 on 200 of the indexed codes and records it as
    the index's search default (0: none; an omitted ``nprobe`` then scans every list).
    ``resume``: reuse a matching quantizer and finished shards.
    """

    n_shards: int = option(4, help="index shards", flag="--shards")
    index_type: str = option(
        "ivf", help="index type (auto: chosen by measurement)", choices=build_index_types
    )
    auto_sample: int = option(50_000, help="codes sampled by --index-type auto")
    nlist: int | None = option(None, help="IVF lists (default ~4·sqrt(n))")
    train_size: int = option(100_000, help="quantizer training sample")
    seed: int = option(0, help="seed of the training sample")
    niter: int = option(20, help="k-means iterations of the quantizer")
    quantizer: str = option("flat", help="coarse quantizer", choices=list_quantizers)
    hnsw_m: int = option(16, help="HNSW graph degree (--quantizer hnsw)")
    graph_m: int = option(32, help="HNSW graph degree M (--index-type hnsw)")
    ef_construction: int = option(40, help="HNSW build beam width (--index-type hnsw)")
    target_recall: float = option(0.95, help="recall@10 the recorded search default reaches")
    task_num_cpus: float = option(SHARD_TASK_CPUS, help="CPUs per shard-build task")
    faiss_threads: int = option(1, help="FAISS threads per shard-build task")
    resume: bool = option(True, help="rebuild even finished shards", flag="--no-resume")

    def __post_init__(self) -> None:
        if self.n_shards < 1:
            raise ValueError(f"BuildConfig.n_shards must be >= 1, got {self.n_shards}")
        if self.nlist is not None and self.nlist < 1:
            raise ValueError(f"BuildConfig.nlist must be >= 1, got {self.nlist}")
        if self.train_size < 1:
            raise ValueError(f"BuildConfig.train_size must be >= 1, got {self.train_size}")
        if self.niter < 1:
            raise ValueError(f"BuildConfig.niter must be >= 1, got {self.niter}")
        if self.quantizer not in QUANTIZERS:
            raise ValueError(
                f"BuildConfig.quantizer must be one of {QUANTIZERS}, got {self.quantizer!r}"
            )
        if self.hnsw_m < 2:
            raise ValueError(f"BuildConfig.hnsw_m must be >= 2, got {self.hnsw_m}")
        if self.index_type not in build_index_types():
            raise ValueError(
                f"BuildConfig.index_type must be one of {build_index_types()}, "
                f"got {self.index_type!r}"
            )
        if self.graph_m < 2:
            raise ValueError(f"BuildConfig.graph_m must be >= 2, got {self.graph_m}")
        if self.ef_construction < 1:
            raise ValueError(
                f"BuildConfig.ef_construction must be >= 1, got {self.ef_construction}"
            )
        if not 0.0 <= self.target_recall <= 1.0:
            raise ValueError(
                f"BuildConfig.target_recall must be in [0, 1], got {self.target_recall}"
            )
        if not self.task_num_cpus > 0:
            raise ValueError(f"BuildConfig.task_num_cpus must be > 0, got {self.task_num_cpus}")
        if self.auto_sample < 1:
            raise ValueError(f"BuildConfig.auto_sample must be >= 1, got {self.auto_sample}")
        if self.faiss_threads < 1:
            raise ValueError(f"BuildConfig.faiss_threads must be >= 1, got {self.faiss_threads}")


def index_params(cfg: BuildConfig, nlist: int) -> dict[str, Any]:
    """The index type's build parameters from the config (what the manifest records)."""
    if cfg.index_type == "ivf":
        params = {
            "nlist": nlist, "quantizer": cfg.quantizer, "hnsw_m": cfg.hnsw_m,
            "train_size": cfg.train_size, "seed": cfg.seed, "niter": cfg.niter,
        }  # fmt: skip
    elif cfg.index_type == "hnsw":
        params = {"M": cfg.graph_m, "ef_construction": cfg.ef_construction}
    else:
        params = {}
    make_params(cfg.index_type, params)  # validated by the type's params dataclass
    return params


def meta_table(table: pa.Table) -> pa.Table:
    """``id``, ``code``, ``key``, ``label`` of a codes table (missing key/label become null)."""
    cols = {"id": table.column("id").cast(pa.int64()), "code": table.column("code")}
    for name, typ in META_TYPES.items():
        if name in table.column_names:
            cols[name] = table.column(name).cast(typ)
        else:
            cols[name] = pa.nulls(table.num_rows, typ)
    return pa.table(cols)


def read_code_set(
    codes: str, storage_options: dict[str, Any] | None
) -> tuple[dict[str, Any], int, pa.Table, np.ndarray, np.ndarray]:
    """``(encode info, n_bits, meta table, ids, codes)`` of a code directory; ids must be unique."""
    info = read_encode_info(codes, storage_options)
    n_bits = int(info["n_bits"])
    table = meta_table(read_codes(codes, storage_options=storage_options))
    ids, code_arr = code_arrays(table, n_bits, source=storage.join(codes, "codes"))
    if len(ids) == 0:
        raise ValueError(f"{codes}: no codes to index")
    sorted_ids = np.sort(ids)
    repeated = sorted_ids[1:] == sorted_ids[:-1]
    if repeated.any():
        dups = np.unique(sorted_ids[1:][repeated])[:5].tolist()
        raise ValueError(f"{codes}: column 'id' has duplicate ids, e.g. {dups}")
    if ids.min() < 0:
        raise ValueError(f"{codes}: column 'id' has negative ids")
    return info, n_bits, table, ids, code_arr


def build(
    codes: str,
    output: str,
    *,
    config: BuildConfig | None = None,
    storage_options: dict[str, Any] | None = None,
    **options: Any,
) -> Manifest:
    """Build an index directory from an encode job's code directory (Ray must be initialised).

    Takes either ``config=BuildConfig(...)`` or its fields as keywords (``n_shards=3, seed=1``),
    not both. Trains one binary k-means quantizer on a seeded sample, assigns ids to shards by
    ``shard_of``, fills every shard in a Ray task — all into a new generation directory
    ``gen-NNNNNN/`` (one past the current generation: a rebuild in place never touches the
    generation being served) — and publishes ``manifest.json`` last.
    """
    import ray

    if config is not None and options:
        raise TypeError(
            f"build: give config= or BuildConfig fields as keywords, not both "
            f"(got config and {sorted(options)})"
        )
    if config is not None and not isinstance(config, BuildConfig):
        raise TypeError(f"build: config must be a BuildConfig, got {type(config).__name__}")
    cfg = config if config is not None else BuildConfig(**options)
    t0 = time.perf_counter()
    info, n_bits, table, ids, code_arr = read_code_set(codes, storage_options)
    n = len(ids)
    auto_choice = None
    if cfg.index_type == AUTO:
        from indexer.build_auto import choose_index_type

        choice = choose_index_type(
            code_arr, target_recall=cfg.target_recall, seed=cfg.seed,
            sample_size=cfg.auto_sample, ef_construction=cfg.ef_construction,
        )  # fmt: skip
        logger.info("build: --index-type auto chose %s: %s", choice.index_type, choice.reason)
        auto_choice = choice.to_json()
        cfg = replace(
            cfg, index_type=choice.index_type, graph_m=choice.params.get("M", cfg.graph_m)
        )
    ivf = cfg.index_type == "ivf"
    n_lists = (cfg.nlist if cfg.nlist is not None else default_nlist(n)) if ivf else 1
    params = index_params(cfg, n_lists)
    key_cfg = {
        "nlist": n_lists, "n_shards": cfg.n_shards, "train_size": cfg.train_size,
        "seed": cfg.seed, "niter": cfg.niter, "quantizer": cfg.quantizer, "hnsw_m": cfg.hnsw_m,
    }  # fmt: skip
    if not ivf:  # keys of ivf builds stay as they were (resume across this change)
        key_cfg = {"index_type": cfg.index_type, "n_shards": cfg.n_shards, **params}
    key = build_key(ids, code_arr, n_bits, key_cfg)
    logger.info(
        "build: %d codes of %d bits, index type %s %s, %d shards (read in %.2f s)",
        n, n_bits, cfg.index_type, params, cfg.n_shards, time.perf_counter() - t0,
    )  # fmt: skip

    storage.makedirs(output, storage_options)
    # Never write into a generation that may be served: the new files go to gen-NNNNNN/ of a
    # generation above every existing one, and the manifest pointer moves last.
    current = current_generation(output, storage_options)
    state = quantizer_ok(output, key, storage_options) if cfg.resume and ivf else None
    if state is not None and state.generation > current:
        generation = state.generation  # finish the same unpublished generation
    else:
        generation = next_generation(output, storage_options)
    quantizer: bytes | None = None
    quantizer_file: str | None = None
    quantizer_sha: str | None = None
    if not ivf:
        pass  # hnsw and flat shards need no trained quantizer
    elif state is not None:
        quantizer_file, quantizer_sha = state.quantizer_file, state.quantizer_sha256
        quantizer = storage.read_bytes(storage.join(output, quantizer_file), storage_options)
        logger.info("build: resuming; reusing the trained quantizer %s", quantizer_file)
    else:
        t_train = time.perf_counter()
        quantizer = train_quantizer(
            code_arr, n_bits, n_lists, train_size=cfg.train_size, seed=cfg.seed,
            niter=cfg.niter, quantizer=cfg.quantizer, hnsw_m=cfg.hnsw_m,
        )  # fmt: skip
        quantizer_file = f"{gen_dir(generation)}/{QUANTIZER_FILE}"
        storage.write_bytes_atomic(storage.join(output, quantizer_file), quantizer, storage_options)
        quantizer_sha = storage.sha256_bytes(quantizer)
        write_state(
            output,
            {"key": key, "quantizer_sha256": quantizer_sha, "quantizer_file": quantizer_file,
             "generation": generation},
            storage_options,
        )  # fmt: skip
        logger.info("build: quantizer trained in %.2f s", time.perf_counter() - t_train)
    logger.info("build: writing generation %d of %s (current: %d)", generation, output, current)

    assignment = shard_of(ids, cfg.n_shards)
    # numpy's stable sort is a radix sort for 16-bit keys: several times faster on 10M rows.
    keys = assignment.astype(np.uint16) if cfg.n_shards <= 2**16 else assignment
    order = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(assignment[order], np.arange(cfg.n_shards + 1))
    results: dict[int, dict[str, Any]] = {}
    if cfg.resume:
        for s in range(cfg.n_shards):
            entry = finished_shard(output, s, key, storage_options)
            if entry is not None:
                results[s] = entry
    if results:
        logger.info("build: resuming; %d of %d shards already finished", len(results), cfg.n_shards)
    # SPREAD: shard builds are memory-heavy and independent, so they go to different nodes.
    fill = ray.remote(num_cpus=cfg.task_num_cpus, scheduling_strategy="SPREAD")(fill_shard)
    quantizer_ref = ray.put(quantizer) if quantizer is not None else None
    fail = fail_shard()
    refs = {}
    for s in range(cfg.n_shards):
        if s in results:
            continue
        rows = order[bounds[s] : bounds[s + 1]]
        refs[s] = fill.remote(
            quantizer_ref, table.take(pa.array(rows)), n_bits, output, s, key,
            cfg.faiss_threads, storage_options, fail == s, generation, cfg.index_type, params,
        )  # fmt: skip
    results.update(run_tasks(refs, cfg.n_shards, len(results)))
    shards = tuple(
        ShardEntry(
            shard=s,
            file=results[s]["file"],
            sha256=results[s]["sha256"],
            meta_file=results[s]["meta_file"],
            meta_sha256=results[s]["meta_sha256"],
            ntotal=int(results[s]["ntotal"]),
            group=0,
        )
        for s in range(cfg.n_shards)
    )
    if sum(e.ntotal for e in shards) != n:
        raise RuntimeError(
            f"build: shards hold {sum(e.ntotal for e in shards)} codes, expected {n}"
        )
    manifest = Manifest(
        n_bits=n_bits,
        nlist=n_lists,
        quantizer_file=quantizer_file,
        quantizer_sha256=quantizer_sha,
        shards=shards,
        encoder_checkpoint=info.get("checkpoint"),
        encoder_sha256=info.get("checkpoint_sha256"),
        generation=generation,
        build_config={
            **{k: v for k, v in asdict(cfg).items() if k != "resume"}, "nlist": n_lists,
            "codes": codes,
        },
        index_type=cfg.index_type,
        index_params=params,
        auto_choice=auto_choice,
    )  # fmt: skip
    manifest = with_search_defaults(
        manifest, output, code_arr, cfg.target_recall, cfg.seed, storage_options
    )
    if current and same_index(output, manifest, current, storage_options):
        logger.info("build: %s already holds exactly this index (generation %d)", output, current)
        return read_manifest(output, storage_options)
    write_manifest(output, manifest, storage_options)
    logger.info(
        "build: %d codes in %d shards (%d built, %d reused) in %.2f s",
        n, cfg.n_shards, len(refs), cfg.n_shards - len(refs), time.perf_counter() - t0,
    )  # fmt: skip
    return manifest
