"""Writing one shard: its ``IndexBinaryIVF`` file, its meta Parquet file and its completion marker.

These run inside Ray tasks (build, append, delete). A shard's files are written first and its
marker (``_build/shard-NNNNN.json``, naming the files and their sha256) last, so a killed build
can tell finished shards from half-written ones.
"""

from __future__ import annotations

import io
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from indexer import storage
from indexer.build_state import write_marker
from indexer.codes import code_arrays
from indexer.index_types.base import IndexType, write_index_file
from indexer.manifest import gen_dir
from indexer.quantizer import index_from_bytes

if TYPE_CHECKING:
    import faiss

logger = logging.getLogger(__name__)

FAIL_ENV = "ODH_BUILD_FAIL_SHARD"


def shard_file(shard: int, generation: int = 1) -> str:
    """``gen-000002/shard-00000.faissbin``: shard ``shard``'s index written by ``generation``.

    (Format-1 indexes written before generation directories used ``shard-00000.faissbin`` and
    ``shard-00000-g00002.faissbin`` at the top level; their manifests name them and still load.)
    """
    return f"{gen_dir(generation)}/shard-{shard:05d}.faissbin"


def meta_file(shard: int, generation: int = 1) -> str:
    """``gen-000002/meta-00000.parquet``: shard ``shard``'s meta table written by ``generation``."""
    return f"{gen_dir(generation)}/meta-{shard:05d}.parquet"


def write_index(
    index: faiss.IndexBinary, uri: str, storage_options: dict[str, Any] | None
) -> tuple[str, int]:
    """Write a FAISS binary index atomically; ``(sha256, bytes)`` (see ``write_index_file``)."""
    return write_index_file(index, uri, storage_options)


def write_table(
    table: pa.Table, uri: str, storage_options: dict[str, Any] | None
) -> tuple[str, int]:
    """Write a Parquet file atomically; ``(sha256, bytes)``."""
    buf = io.BytesIO()
    pq.write_table(table, buf)
    data = buf.getvalue()
    storage.write_bytes_atomic(uri, data, storage_options)
    return storage.sha256_bytes(data), len(data)


#: CPUs a shard task (build, append, delete) asks for, matching its one FAISS thread: fractional
#: requests start more Ray workers than cores (each a cold start) and oversubscribe them.
SHARD_TASK_CPUS: float = 1.0


def write_shard(
    index: IndexType,
    meta: pa.Table,
    output: str,
    shard: int,
    generation: int,
    storage_options: dict[str, Any] | None,
) -> dict[str, Any]:
    """Write a shard's index (an index-type adapter) and meta files; returns the manifest entry
    fields."""
    file, mfile = shard_file(shard, generation), meta_file(shard, generation)
    sha, nbytes = index.save(storage.join(output, file), storage_options)
    meta_sha, meta_bytes = write_table(meta, storage.join(output, mfile), storage_options)
    return {
        "shard": shard,
        "file": file,
        "sha256": sha,
        "meta_file": mfile,
        "meta_sha256": meta_sha,
        "ntotal": int(index.ntotal),
        "bytes": nbytes,
        "meta_bytes": meta_bytes,
    }


def fill_shard(
    quantizer: bytes | None,
    meta: pa.Table,
    n_bits: int,
    output: str,
    shard: int,
    build_key: str,
    faiss_threads: int,
    storage_options: dict[str, Any] | None,
    fail: bool = False,
    generation: int = 1,
    index_type: str = "ivf",
    index_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Ray task body: add one shard's codes to a new index of ``index_type`` (for ``ivf``: a
    copy of the trained ``quantizer``), write its files under ``gen-NNNNNN/`` of
    ``generation`` (a generation not yet published), then its marker.

    ``fail=True`` (set by the driver from ``$ODH_BUILD_FAIL_SHARD``) raises before the files are
    written — a test hook that simulates a build killed part-way.
    """
    import faiss

    faiss.omp_set_num_threads(faiss_threads)
    t0 = time.perf_counter()
    if fail:
        raise RuntimeError(f"shard {shard}: injected failure (${FAIL_ENV})")
    index = new_shard_index(index_type, n_bits, index_params, quantizer)
    ids, codes = code_arrays(meta, n_bits, source=f"shard {shard}")
    index.add(codes, ids)
    entry = write_shard(index, meta, output, shard, generation, storage_options)
    write_marker(output, shard, build_key, entry, storage_options)
    entry["seconds"] = time.perf_counter() - t0
    return entry


def update_shard(
    index_dir: str,
    entry: dict[str, Any],
    add: pa.Table | None,
    remove_ids: np.ndarray | None,
    n_bits: int,
    generation: int,
    faiss_threads: int,
    storage_options: dict[str, Any] | None,
    index_type: str = "ivf",
    index_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Ray task body for append/delete: write a new generation of one shard's files."""
    import faiss

    from indexer.manifest import ShardEntry
    from indexer.shards import load_meta, load_shard

    faiss.omp_set_num_threads(faiss_threads)
    shard_entry = ShardEntry.from_json(entry)
    index = load_shard(
        index_dir, shard_entry, index_type=index_type, index_params=index_params,
        storage_options=storage_options,
    )  # fmt: skip
    meta = load_meta(index_dir, shard_entry, storage_options=storage_options)
    if remove_ids is not None and len(remove_ids):
        remove_ids = np.asarray(remove_ids, dtype=np.int64)
        removed = index.remove(remove_ids)
        if removed != len(remove_ids):
            raise RuntimeError(f"shard {shard_entry.shard}: removed {removed} of {len(remove_ids)}")
        keep = ~np.isin(meta.column("id").to_numpy(), remove_ids)
        meta = meta.filter(pa.array(keep))
    if add is not None and add.num_rows:
        ids, codes = code_arrays(add, n_bits, source=f"shard {shard_entry.shard} (append)")
        index.add(codes, ids)
        meta = pa.concat_tables([meta, add.select(meta.column_names).cast(meta.schema)])
    if index.ntotal != meta.num_rows:
        raise RuntimeError(
            f"shard {shard_entry.shard}: index holds {index.ntotal}, meta {meta.num_rows} rows"
        )
    return write_shard(index, meta, index_dir, shard_entry.shard, generation, storage_options)


def new_shard_index(
    index_type: str, n_bits: int, index_params: dict[str, Any] | None, quantizer: bytes | None
) -> IndexType:
    """An empty shard index of ``index_type``: for ``ivf`` a copy of the trained ``quantizer``
    (serialised ``IndexBinaryIVF``), for the others a new index from ``index_params``."""
    from indexer.index_types.registry import create_index_type, make_params

    if index_type == "ivf":
        if quantizer is None:
            raise ValueError("index type 'ivf': a shard needs the trained quantizer")
        from indexer.index_types.ivf import IvfIndex

        params = make_params("ivf", index_params) if index_params else None
        return IvfIndex.from_faiss(index_from_bytes(quantizer), params)
    return create_index_type(index_type, n_bits, **(index_params or {}))
