"""Shard assignment and loading (with sha256 verification) of an index's shards and metadata.

Searching is :mod:`indexer.search` (one searchable per group of shards).
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from indexer import storage
from indexer.index_types.base import MISSING_DISTANCE, IndexType, read_index_file
from indexer.manifest import Manifest, ShardEntry

if TYPE_CHECKING:
    import faiss

logger = logging.getLogger(__name__)

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)

__all__ = ["MISSING_DISTANCE", "load_meta", "load_quantizer", "load_shard", "shard_of"]


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


def load_shard(
    index_dir: str,
    entry: ShardEntry,
    *,
    manifest: Manifest | None = None,
    index_type: str = "ivf",
    index_params: dict[str, Any] | None = None,
    verify: bool = True,
    mmap: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> IndexType:
    """Load one shard as its index-type adapter: ``manifest``'s type and parameters when given,
    else ``index_type`` / ``index_params``.

    Verifies the file's sha256 (ValueError naming the file) and its ``ntotal`` against the
    manifest. ``mmap=True`` memory-maps a local file (``IO_FLAG_MMAP``; read-only).
    """
    from indexer.index_types.registry import get_index_type, make_params

    if manifest is not None:
        index_type, index_params = manifest.index_type, manifest.index_params
    cls = get_index_type(index_type)
    params = make_params(index_type, index_params) if index_params else None
    uri = storage.join(index_dir, entry.file)
    index = read_index_file(
        uri, entry.sha256 if verify else None, mmap=mmap, storage_options=storage_options
    )
    try:
        part = cls.from_faiss(index, params)
    except TypeError as exc:
        raise ValueError(f"{uri}: index type {index_type!r}: {exc}") from None
    if part.ntotal != entry.ntotal:
        raise ValueError(f"{uri}: ntotal {part.ntotal} differs from the manifest's {entry.ntotal}")
    return part


def load_quantizer(
    index_dir: str,
    manifest: Manifest,
    *,
    verify: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> faiss.IndexBinaryIVF:
    """Load the trained, empty ``IndexBinaryIVF`` that every shard of an ivf index shares."""
    if manifest.quantizer_file is None:
        raise ValueError(f"{index_dir}: index type {manifest.index_type!r} has no quantizer")
    uri = storage.join(index_dir, manifest.quantizer_file)
    return read_index_file(
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
