"""Searcher groups: one Serve replica holds a group of index shards and answers exact merged top-k.

``ShardGroup`` is the plain class (usable in-process); ``Searcher`` is the same class wrapped as a
Ray Serve deployment. A group loads its shards with ``indexer.shards.load_shard`` (sha256 verified)
and their metadata with ``indexer.shards.load_meta``; ids are kept sorted so ``id → row`` is a
``numpy.searchsorted``. All shards of an index share one coarse quantizer, so searching every shard
with the same ``nprobe`` and merging by ``(distance, id)`` equals a global IVF search.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
from ray import serve

from serving.merge import merge_topk

logger = logging.getLogger(__name__)


class GroupHits(NamedTuple):
    """Top-k of one group: ``distances int32[nq,k]``, ``ids int64[nq,k]`` (``-1`` = none) and the
    ``key`` / ``label`` of every hit (``None`` where the id is ``-1`` or the field is absent)."""

    distances: np.ndarray
    ids: np.ndarray
    keys: list[list[str | None]]
    labels: list[list[list[int] | None]]


def _column_or_nulls(table: pa.Table, name: str, typ: pa.DataType) -> pa.ChunkedArray:
    if name in table.column_names:
        return table.column(name)
    return pa.chunked_array([pa.nulls(table.num_rows, type=typ)])


def _search_tie_complete(
    index: Any, codes: np.ndarray, k: int, params: Any
) -> tuple[np.ndarray, np.ndarray]:
    """FAISS top-``k`` of one shard, widened so that every code tied at the k-th distance is in.

    FAISS breaks ties arbitrarily, so a shard's top-k may hold id 80 and drop id 38 at the same
    k-th distance; merging by ``(distance, id)`` is then not the true ``(distance, id)`` top-k.
    Rows whose last returned distance still equals their k-th distance are searched again with a
    doubled ``k`` until the list ends past the tie (or runs out of codes).
    """
    d, i = index.search(codes, k, params=params)
    if k >= index.ntotal:
        return d, i
    kk = k
    todo = np.flatnonzero((d[:, -1] == d[:, k - 1]) & (i[:, -1] >= 0))
    while todo.size and kk < index.ntotal:
        kk = min(2 * kk, int(index.ntotal))
        d2, i2 = index.search(codes[todo], kk, params=params)
        # Keep everything up to and including the tied k-th distance; merge_topk cuts to k later.
        width = d2.shape[1]
        if width > d.shape[1]:
            d = np.pad(d, ((0, 0), (0, width - d.shape[1])), constant_values=np.iinfo(np.int32).max)
            i = np.pad(i, ((0, 0), (0, width - i.shape[1])), constant_values=-1)
        d[todo], i[todo] = d2, i2
        still = (d2[:, -1] == d2[:, k - 1]) & (i2[:, -1] >= 0)
        todo = todo[still]
    return d, i


class ShardGroup:
    """A group of shards of one index directory, searched together.

    Args:
        index_dir: index directory (local path or ``s3://`` URI) with ``manifest.json``.
        shards: shard numbers (``ShardEntry.shard``) this group holds.
        num_threads: FAISS OpenMP threads of this process (set explicitly: oversubscription on a
            small box turns a 0.05 ms query into milliseconds).
        verify: check each shard's sha256 on load.
        mmap: memory-map shard files (local files only; gives read-only indexes).
    """

    def __init__(
        self,
        index_dir: str,
        shards: Sequence[int],
        num_threads: int = 1,
        *,
        verify: bool = True,
        mmap: bool = False,
    ) -> None:
        import faiss

        from indexer.manifest import read_manifest
        from indexer.shards import load_meta, load_shard

        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        faiss.omp_set_num_threads(num_threads)
        manifest = read_manifest(index_dir)
        shard_list = [int(s) for s in shards]
        if not shard_list:
            raise ValueError("shards: a searcher group needs at least one shard")
        by_number = {int(e.shard): e for e in manifest.shards}
        for s in shard_list:
            if s not in by_number:
                raise ValueError(f"shards: shard {s} is not in {index_dir}/manifest.json")
        self.index_dir = index_dir
        self.shards = shard_list
        self.num_threads = num_threads
        self.n_bits = int(manifest.n_bits)
        self.generation = int(manifest.generation)
        self.nlist = int(manifest.nlist)
        self._indexes = []
        metas = []
        for s in shard_list:
            entry = by_number[s]
            self._indexes.append(load_shard(index_dir, entry, verify=verify, mmap=mmap))
            metas.append(load_meta(index_dir, entry))
        self._build_lookup(metas)
        logger.info(
            "searcher group loaded shards %s of %s: %d codes, %d bits",
            shard_list,
            index_dir,
            self.ntotal,
            self.n_bits,
        )

    def _build_lookup(self, metas: list[pa.Table]) -> None:
        from indexer.codes import codes_to_numpy

        ids = np.concatenate(
            [m.column("id").to_numpy().astype(np.int64, copy=False) for m in metas]
        )
        codes = np.concatenate(
            [codes_to_numpy(m.column("code"), self.n_bits, "meta") for m in metas], axis=0
        )
        keys = pa.chunked_array(
            [c for m in metas for c in _column_or_nulls(m, "key", pa.string()).chunks],
            type=pa.string(),
        )
        label_type = pa.list_(pa.int32())
        labels = pa.chunked_array(
            [
                c.cast(label_type)
                for m in metas
                for c in _column_or_nulls(m, "label", label_type).chunks
            ],
            type=label_type,
        )
        order = np.argsort(ids, kind="stable")
        self._sorted_ids = ids[order]
        if len(ids) > 1 and np.any(self._sorted_ids[1:] == self._sorted_ids[:-1]):
            raise ValueError(f"{self.index_dir}: duplicate ids in shards {self.shards}")
        self._codes = codes[order]
        order_pa = pa.array(order)
        self._keys = keys.take(order_pa)
        self._labels = labels.take(order_pa)
        self.ntotal = len(ids)

    def _rows_of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows (into the sorted arrays) of ``ids`` and a found mask."""
        if self.ntotal == 0:
            return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
        pos = np.searchsorted(self._sorted_ids, ids)
        pos = np.minimum(pos, self.ntotal - 1)
        found = (self._sorted_ids[pos] == ids) & (ids >= 0)
        return pos, found

    def search(self, codes: np.ndarray, k: int, nprobe: int | None = None) -> GroupHits:
        """Exact-merged top-``k`` over this group's shards for ``codes uint8[nq, n_bits/8]``.

        ``nprobe`` defaults to ``nlist`` (exhaustive) and is clipped to ``nlist``.
        """
        import faiss

        codes = np.ascontiguousarray(codes)
        if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != self.n_bits // 8:
            raise ValueError(
                f"codes must be uint8[nq, {self.n_bits // 8}], got {codes.dtype}{list(codes.shape)}"
            )
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        probe = self.nlist if nprobe is None else min(int(nprobe), self.nlist)
        if probe < 1:
            raise ValueError(f"nprobe must be >= 1, got {nprobe}")
        params = faiss.SearchParametersIVF(nprobe=probe)
        ds, is_ = [], []
        for index in self._indexes:
            d, i = _search_tie_complete(index, codes, k, params)
            ds.append(d)
            is_.append(i)
        dist, ids = merge_topk(ds, is_, k)
        keys, labels = self.attach(ids)
        return GroupHits(dist, ids, keys, labels)

    def attach(
        self, ids: np.ndarray
    ) -> tuple[list[list[str | None]], list[list[list[int] | None]]]:
        """``key`` and ``label`` of each id in ``ids int64[nq, k]`` (``None`` if -1/unknown)."""
        flat = np.asarray(ids, dtype=np.int64).reshape(-1)
        rows, found = self._rows_of(flat)
        key_list = self._keys.take(pa.array(rows)).to_pylist() if len(rows) else []
        label_list = self._labels.take(pa.array(rows)).to_pylist() if len(rows) else []
        nq, k = ids.shape
        keys = [
            [key_list[r * k + c] if found[r * k + c] else None for c in range(k)] for r in range(nq)
        ]
        labels = [
            [label_list[r * k + c] if found[r * k + c] else None for c in range(k)]
            for r in range(nq)
        ]
        return keys, labels

    def lookup(self, ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored codes of ``ids``: ``(codes uint8[n, n_bits/8], found bool[n])`` (zero rows where
        not found in this group)."""
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        rows, found = self._rows_of(arr)
        codes = np.zeros((len(arr), self.n_bits // 8), dtype=np.uint8)
        if found.any():
            codes[found] = self._codes[rows[found]]
        return codes, found

    def stats(self) -> dict[str, Any]:
        """Shards held, code count, and index identity."""
        return {
            "shards": list(self.shards),
            "ntotal": int(self.ntotal),
            "shard_ntotal": [int(ix.ntotal) for ix in self._indexes],
            "n_bits": self.n_bits,
            "nlist": self.nlist,
            "generation": self.generation,
            "num_threads": self.num_threads,
        }


#: Ray Serve deployment of ``ShardGroup``; give each group its own ``name`` via ``.options``.
Searcher = serve.deployment(
    ShardGroup,
    name="Searcher",
    num_replicas=1,
    ray_actor_options={"num_cpus": 0.25},
)
