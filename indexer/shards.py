"""Shard assignment, loading (with sha256 verification) and an exact in-process sharded search."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from indexer import storage
from indexer.manifest import Manifest, ShardEntry

if TYPE_CHECKING:
    import faiss

logger = logging.getLogger(__name__)

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
MISSING_DISTANCE = np.iinfo(np.int32).max


def splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 values (a fixed, platform-independent 64-bit mix)."""
    z = np.asarray(values).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z & _MASK64


def shard_of(ids: np.ndarray, n_shards: int) -> np.ndarray:
    """Shard index (int64) of every id: ``splitmix64(id) % n_shards``."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    ids = np.asarray(ids)
    if ids.size and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0):
        raise ValueError("ids must be non-negative integers")
    return (splitmix64(ids.astype(np.int64)) % np.uint64(n_shards)).astype(np.int64)


def _read_index_bytes(data: bytes) -> faiss.IndexBinary:
    import faiss

    return faiss.deserialize_index_binary(np.frombuffer(data, dtype=np.uint8))


def _load_verified(
    uri: str,
    expected_sha256: str | None,
    *,
    mmap: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> faiss.IndexBinary:
    import faiss

    fs, path = storage.url_to_fs(uri, storage_options)
    if mmap:
        if not storage.is_local(fs):
            raise ValueError(f"{uri}: mmap=True needs a local file")
        if expected_sha256 is not None:
            got = storage.sha256_of(uri, storage_options)
            if got != expected_sha256:
                raise ValueError(f"{uri}: sha256 mismatch (expected {expected_sha256}, got {got})")
        return faiss.read_index_binary(path, faiss.IO_FLAG_MMAP)
    data = storage.read_bytes(uri, storage_options)
    if expected_sha256 is not None:
        got = storage.sha256_bytes(data)
        if got != expected_sha256:
            raise ValueError(f"{uri}: sha256 mismatch (expected {expected_sha256}, got {got})")
    return _read_index_bytes(data)


def load_shard(
    index_dir: str,
    entry: ShardEntry,
    *,
    verify: bool = True,
    mmap: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> faiss.IndexBinaryIVF:
    """Load one shard's ``IndexBinaryIVF``; verifies sha256 (ValueError naming the file).

    ``mmap=True`` memory-maps a local file (``IO_FLAG_MMAP``; the index is then read-only).
    """
    import faiss

    uri = storage.join(index_dir, entry.file)
    index = _load_verified(
        uri, entry.sha256 if verify else None, mmap=mmap, storage_options=storage_options
    )
    if not isinstance(index, faiss.IndexBinaryIVF):
        raise ValueError(f"{uri}: expected an IndexBinaryIVF, got {type(index).__name__}")
    ivf = index
    if ivf.ntotal != entry.ntotal:
        raise ValueError(f"{uri}: ntotal {ivf.ntotal} differs from the manifest's {entry.ntotal}")
    return ivf


def load_quantizer(
    index_dir: str,
    manifest: Manifest,
    *,
    verify: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> faiss.IndexBinaryIVF:
    """Load the trained, empty ``IndexBinaryIVF`` that every shard shares."""
    uri = storage.join(index_dir, manifest.quantizer_file)
    return _load_verified(
        uri, manifest.quantizer_sha256 if verify else None, storage_options=storage_options
    )


def load_meta(
    index_dir: str,
    entry: ShardEntry,
    *,
    verify: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> pa.Table:
    """Load one shard's ``meta-NNNNN.parquet`` (``id``, ``code``, ``key``, ``label``)."""
    uri = storage.join(index_dir, entry.meta_file)
    data = storage.read_bytes(uri, storage_options)
    if verify:
        got = storage.sha256_bytes(data)
        if got != entry.meta_sha256:
            raise ValueError(f"{uri}: sha256 mismatch (expected {entry.meta_sha256}, got {got})")
    return pq.read_table(io.BytesIO(data))


def merge_results(
    distances: Sequence[np.ndarray], ids: Sequence[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard top-k lists by (distance, id); empty slots: id -1, distance int32 max."""
    d = np.concatenate([np.asarray(x, dtype=np.int64) for x in distances], axis=1)
    i = np.concatenate([np.asarray(x, dtype=np.int64) for x in ids], axis=1)
    missing = i < 0
    d = np.where(missing, np.int64(MISSING_DISTANCE), d)
    i_sort = np.where(missing, np.iinfo(np.int64).max, i)
    order = np.lexsort((i_sort, d), axis=1)[:, :k]
    d_out = np.take_along_axis(d, order, axis=1).astype(np.int32)
    i_out = np.take_along_axis(i, order, axis=1)
    i_out[d_out == MISSING_DISTANCE] = -1
    if d_out.shape[1] < k:
        pad = k - d_out.shape[1]
        d_out = np.pad(d_out, ((0, 0), (0, pad)), constant_values=MISSING_DISTANCE)
        i_out = np.pad(i_out, ((0, 0), (0, pad)), constant_values=-1)
    return d_out, i_out


def search_shards(
    indexes: Sequence[faiss.IndexBinaryIVF],
    query_codes: np.ndarray,
    k: int,
    nprobe: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Search every shard with ``nprobe`` and merge exactly by (distance, id).

    Returns ``(D int32[nq, k], I int64[nq, k])``; slots without a result hold id -1.
    """
    import faiss

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if nprobe < 1:
        raise ValueError(f"nprobe must be >= 1, got {nprobe}")
    if not indexes:
        raise ValueError("search_shards: no indexes given")
    q = np.ascontiguousarray(query_codes, dtype=np.uint8)
    if q.ndim != 2 or q.shape[1] * 8 != indexes[0].d:
        raise ValueError(f"query_codes must be uint8[nq, {indexes[0].d // 8}], got shape {q.shape}")
    params = faiss.SearchParametersIVF(nprobe=nprobe)
    ds, is_ = [], []
    for index in indexes:
        d, i = index.search(q, k, params=params)
        ds.append(d)
        is_.append(i)
    return merge_results(ds, is_, k)
