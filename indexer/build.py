"""Build a sharded index: one quantizer trained once, Ray tasks fill IVF shards, manifest last."""

from __future__ import annotations

import io
import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from indexer import storage
from indexer.codes import code_arrays, read_codes, read_encode_info
from indexer.manifest import MANIFEST_FILE, Manifest, ShardEntry, write_manifest
from indexer.shards import shard_of

logger = logging.getLogger(__name__)

QUANTIZER_FILE = "quantizer.faissbin"
META_COLUMNS = ("id", "code", "key", "label")


@dataclass(frozen=True)
class BuildConfig:
    """Parameters of one index build."""

    n_shards: int = 4
    nlist: int | None = None
    train_size: int = 100_000
    seed: int = 0
    niter: int = 20
    task_num_cpus: float = 0.5
    faiss_threads: int = 1

    def __post_init__(self) -> None:
        if self.n_shards < 1:
            raise ValueError(f"n_shards must be >= 1, got {self.n_shards}")
        if self.nlist is not None and self.nlist < 1:
            raise ValueError(f"nlist must be >= 1, got {self.nlist}")
        if self.train_size < 1:
            raise ValueError(f"train_size must be >= 1, got {self.train_size}")
        if self.niter < 1:
            raise ValueError(f"niter must be >= 1, got {self.niter}")


def default_nlist(n: int) -> int:
    """About ``4 * sqrt(n)`` lists, clipped to ``[1, n / 39]`` (>= 39 training points per list)."""
    return int(min(max(1, round(4 * math.sqrt(max(n, 0)))), max(1, n // 39)))


def shard_file(shard: int) -> str:
    return f"shard-{shard:05d}.faissbin"


def meta_file(shard: int) -> str:
    return f"meta-{shard:05d}.parquet"


def train_quantizer(
    codes: np.ndarray, n_bits: int, nlist: int, *, train_size: int, seed: int, niter: int = 20
) -> bytes:
    """Train an empty ``IndexBinaryIVF`` on a seeded sample; returns its serialised bytes."""
    import faiss

    n = codes.shape[0]
    if n < nlist:
        raise ValueError(f"nlist={nlist} exceeds the number of codes ({n})")
    rng = np.random.default_rng(seed)
    sample = codes if n <= train_size else codes[np.sort(rng.choice(n, train_size, replace=False))]
    ivf = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(n_bits), n_bits, nlist)
    ivf.cp.seed = seed
    ivf.cp.niter = niter
    ivf.cp.max_points_per_centroid = max(256, math.ceil(len(sample) / nlist))
    ivf.train(np.ascontiguousarray(sample))
    return faiss.serialize_index_binary(ivf).tobytes()


def _fill_shard(
    quantizer: bytes,
    meta: pa.Table,
    n_bits: int,
    shard_uri: str,
    meta_uri: str,
    faiss_threads: int,
    storage_options: dict[str, Any] | None,
) -> dict[str, Any]:
    """Body of the Ray task: add one shard's codes to a copy of the trained IVF and write it."""
    import faiss

    faiss.omp_set_num_threads(faiss_threads)
    t0 = time.perf_counter()
    ivf = faiss.deserialize_index_binary(np.frombuffer(quantizer, dtype=np.uint8))
    ids, codes = code_arrays(meta, n_bits, source=meta_uri)
    if len(ids):
        ivf.add_with_ids(codes, ids)
    data = faiss.serialize_index_binary(ivf).tobytes()
    storage.write_bytes_atomic(shard_uri, data, storage_options)
    buf = io.BytesIO()
    pq.write_table(meta, buf)
    meta_bytes = buf.getvalue()
    storage.write_bytes_atomic(meta_uri, meta_bytes, storage_options)
    return {
        "sha256": storage.sha256_bytes(data),
        "meta_sha256": storage.sha256_bytes(meta_bytes),
        "ntotal": int(ivf.ntotal),
        "bytes": len(data),
        "seconds": time.perf_counter() - t0,
    }


def build(
    codes: str,
    output: str,
    *,
    n_shards: int = 4,
    nlist: int | None = None,
    train_size: int = 100_000,
    seed: int = 0,
    config: BuildConfig | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Manifest:
    """Build an index directory from an encode job's code directory (Ray must be initialised).

    Trains one binary k-means quantizer, assigns ids to shards by ``shard_of``, fills every shard
    in a Ray task, and writes ``manifest.json`` last.
    """
    import ray

    cfg = config or BuildConfig(n_shards=n_shards, nlist=nlist, train_size=train_size, seed=seed)
    t0 = time.perf_counter()
    info = read_encode_info(codes, storage_options)
    n_bits = int(info["n_bits"])
    table = read_codes(codes, columns=list(META_COLUMNS), storage_options=storage_options)
    ids, code_arr = code_arrays(table, n_bits, source=storage.join(codes, "codes"))
    n = len(ids)
    if n == 0:
        raise ValueError(f"{codes}: no codes to index")
    if len(np.unique(ids)) != n:
        raise ValueError(f"{codes}: column 'id' has duplicate ids")
    n_lists = cfg.nlist if cfg.nlist is not None else default_nlist(n)
    logger.info("build: %d codes of %d bits, nlist %d, %d shards", n, n_bits, n_lists, cfg.n_shards)

    storage.makedirs(output, storage_options)
    old_manifest = storage.join(output, MANIFEST_FILE)
    if storage.exists(old_manifest, storage_options):
        logger.info("build: removing the previous %s before rewriting shards", old_manifest)
        fs, path = storage.url_to_fs(old_manifest, storage_options)
        fs.rm(path)

    t_train = time.perf_counter()
    quantizer = train_quantizer(
        code_arr, n_bits, n_lists, train_size=cfg.train_size, seed=cfg.seed, niter=cfg.niter
    )
    storage.write_bytes_atomic(storage.join(output, QUANTIZER_FILE), quantizer, storage_options)
    logger.info("build: quantizer trained in %.2f s", time.perf_counter() - t_train)

    assignment = shard_of(ids, cfg.n_shards)
    fill = ray.remote(num_cpus=cfg.task_num_cpus)(_fill_shard)
    quantizer_ref = ray.put(quantizer)
    refs = []
    for s in range(cfg.n_shards):
        rows = np.flatnonzero(assignment == s)
        meta = table.take(pa.array(rows))
        refs.append(
            fill.remote(
                quantizer_ref,
                meta,
                n_bits,
                storage.join(output, shard_file(s)),
                storage.join(output, meta_file(s)),
                cfg.faiss_threads,
                storage_options,
            )
        )
    results = ray.get(refs)
    shards = tuple(
        ShardEntry(
            shard=s,
            file=shard_file(s),
            sha256=r["sha256"],
            meta_file=meta_file(s),
            meta_sha256=r["meta_sha256"],
            ntotal=r["ntotal"],
            group=0,
        )
        for s, r in enumerate(results)
    )
    if sum(e.ntotal for e in shards) != n:
        raise RuntimeError(
            f"build: shards hold {sum(e.ntotal for e in shards)} codes, expected {n}"
        )
    manifest = Manifest(
        n_bits=n_bits,
        nlist=n_lists,
        quantizer_file=QUANTIZER_FILE,
        quantizer_sha256=storage.sha256_bytes(quantizer),
        shards=shards,
        encoder_checkpoint=info.get("checkpoint"),
        encoder_sha256=info.get("checkpoint_sha256"),
        generation=1,
        build_config={**asdict(cfg), "nlist": n_lists, "codes": codes},
    )
    write_manifest(output, manifest, storage_options)
    logger.info("build: %d codes in %d shards in %.2f s", n, cfg.n_shards, time.perf_counter() - t0)
    return manifest
