"""Searcher groups: one Serve replica holds a group of index shards and answers their top-k.

``ShardGroup`` is the plain class (usable in-process); ``Searcher`` is the same class wrapped as a
Ray Serve deployment. Searching is the indexer's one search path: the group's shards load as ONE
searchable (``indexer.search.open_index``; for ivf the shards' lists are joined into one scan
array, tie-exact by ``(distance, id)``). This module keeps the serving concerns: ``key`` /
``label`` of every hit (from ``indexer.shards.load_meta``; ids kept sorted so ``id → row`` is a
``numpy.searchsorted``), code lookup and generations.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from ray import serve

logger = logging.getLogger(__name__)


class GroupHits(NamedTuple):
    """Top-k of one group: ``distances int32[nq,k]``, ``ids int64[nq,k]`` (``-1`` = none) and the
    ``key`` / ``label`` of every hit (null where the id is ``-1`` or the field is absent), as flat
    Arrow arrays in row-major ``ids`` order — they cross the Serve hop as buffers, not as
    thousands of Python objects. (Nested Python lists ``[nq][k]`` are accepted too.)
    ``generation`` and ``digest`` name the manifest the answer came from: the ingress never
    merges answers of different manifests."""

    distances: np.ndarray
    ids: np.ndarray
    keys: Any
    labels: Any
    generation: int | None = None
    digest: str | None = None


def _column_or_nulls(table: pa.Table, name: str, typ: pa.DataType) -> pa.ChunkedArray:
    if name in table.column_names:
        return table.column(name)
    return pa.chunked_array([pa.nulls(table.num_rows, type=typ)])


def _large_local_file(index_dir: str, name: str, threshold: int | None) -> bool:
    """Whether ``index_dir/name`` is a local file of at least ``threshold`` bytes."""
    if threshold is None:
        return False
    from indexer import storage

    fs, path = storage.url_to_fs(storage.join(index_dir, name))
    return storage.is_local(fs) and int(fs.size(path)) >= threshold


class ShardGroup:
    """A group of shards of one index directory, searched together.

    Args:
        index_dir: index directory (local path or ``s3://`` URI) with ``manifest.json``.
        shards: shard numbers (``ShardEntry.shard``) this group holds.
        num_threads: scan threads a search batch is split over (FAISS itself runs with one
            OpenMP thread per scan thread: oversubscription on a small box turns a 0.05 ms
            query into milliseconds).
        verify: check each shard's sha256 on load.
        mmap: memory-map every shard file (local files only; gives read-only indexes).
        mmap_threshold_bytes: memory-map local shard files at least this large (``None``: only
            what ``mmap`` says). Object-store shards are always read into memory.
        generation, digest: load exactly this generation (the current pointer or its copy in
            ``gen-NNNNNN/``) and manifest digest; ``indexer.manifest.StaleGeneration`` if it is
            gone or was rewritten. ``None``: the current manifest.
    """

    def __init__(
        self,
        index_dir: str,
        shards: Sequence[int],
        num_threads: int = 1,
        *,
        verify: bool = True,
        mmap: bool = False,
        mmap_threshold_bytes: int | None = None,
        generation: int | None = None,
        digest: str | None = None,
    ) -> None:
        from indexer.manifest import load_manifest
        from indexer.search import open_index
        from indexer.shards import load_meta

        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        manifest, self.digest = load_manifest(index_dir, generation=generation, digest=digest)
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
        self.index_type = manifest.index_type
        flags = [
            mmap or _large_local_file(index_dir, by_number[s].file, mmap_threshold_bytes)
            for s in shard_list
        ]
        self._index = open_index(
            index_dir, shard_list, manifest=manifest, verify=verify, mmap=flags
        )
        self.search_defaults = dict(self._index.search_defaults)
        self._build_lookup([load_meta(index_dir, by_number[s]) for s in shard_list])
        logger.info(
            "searcher group loaded shards %s of %s: %d codes, %d bits, %s index (defaults %s)",
            shard_list,
            index_dir,
            self.ntotal,
            self.n_bits,
            self.index_type,
            self.search_defaults,
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
        """Top-``k`` by ``(distance, id)`` over this group's shards for ``codes uint8[nq,
        n_bits/8]`` (the indexer's search path).

        ``nprobe`` (ivf): omitted, the manifest's recommended default (``search_defaults``),
        else every list (exhaustive); clipped to ``nlist``. Ignored by other index types, which
        use their own recorded defaults (hnsw: ``ef_search``).
        """
        codes = np.ascontiguousarray(codes)
        if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != self.n_bits // 8:
            raise ValueError(
                f"codes must be uint8[nq, {self.n_bits // 8}], got {codes.dtype}{list(codes.shape)}"
            )
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        params: dict[str, Any] = {}
        if nprobe is not None:
            if int(nprobe) < 1:
                raise ValueError(f"nprobe must be >= 1, got {nprobe}")
            if "nprobe" in self._index.search_params:
                params["nprobe"] = min(int(nprobe), self.nlist)
        dist, ids = self._index.search(codes, k, threads=self.num_threads, **params)
        flat = ids.reshape(-1)
        rows, found = self._rows_of(flat)
        mask = pa.array(~found)
        keys = pc.if_else(mask, pa.scalar(None, pa.string()), self._keys.take(rows))
        labels = pc.if_else(mask, pa.scalar(None, self._labels.type), self._labels.take(rows))
        return GroupHits(
            dist, ids, keys.combine_chunks(), labels.combine_chunks(), self.generation, self.digest
        )

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
            "shard_ntotal": list(self._index.shard_ntotal),
            "n_bits": self.n_bits,
            "nlist": self.nlist,
            "index_type": self.index_type,
            "search_defaults": dict(self.search_defaults),
            "generation": self.generation,
            "manifest_digest": self.digest,
            "num_threads": self.num_threads,
        }


class SearcherCore:
    """One searcher group replica: serves ``ShardGroup`` objects keyed by ``GroupSpec``.

    Every call names the ``GroupSpec`` it wants (``None``: the one given at construction). A
    spec not held yet is loaded on demand — after ``prepare`` during a reload, or after Serve
    restarted this replica with its original arguments. A held spec not asked for during
    ``retain_s`` seconds is dropped at the next call for another one, so a reload holds two
    generations in memory for a short while only.

    Args:
        index_dir, shards, num_threads: the initial group (see ``ShardGroup``).
        group: this group's number (metrics tag).
        mmap_threshold_bytes: memory-map local shard files at least this large.
        retain_s: keep an unused older generation this long.
    """

    def __init__(
        self,
        index_dir: str,
        shards: Sequence[int],
        num_threads: int = 1,
        *,
        group: int = 0,
        mmap_threshold_bytes: int | None = None,
        retain_s: float = 30.0,
    ) -> None:
        import threading

        from serving.layout import GroupSpec
        from serving.metrics import replica_metrics

        self.group = int(group)
        self.num_threads = int(num_threads)
        self.mmap_threshold_bytes = mmap_threshold_bytes
        self.retain_s = float(retain_s)
        self._lock = threading.Lock()  # guards _held, _last_used, _current (short sections)
        self._load_lock = threading.Lock()  # one generation load at a time
        self._metrics = replica_metrics()
        self._held: dict[Any, ShardGroup] = {}
        self._last_used: dict[Any, float] = {}
        first = self._load(GroupSpec(index_dir, tuple(int(s) for s in shards), 0))
        self._default = GroupSpec(index_dir, tuple(first.shards), first.generation, first.digest)
        self._held[self._default] = first
        self._current = self._default
        self._touch(self._default)
        self._metrics.codes(self.group, first.ntotal)

    def _load(self, spec: Any) -> ShardGroup:
        """Load ``spec``'s generation exactly (generation ``0``: the current manifest)."""
        return ShardGroup(
            spec.index_dir,
            list(spec.shards),
            self.num_threads,
            mmap_threshold_bytes=self.mmap_threshold_bytes,
            generation=spec.generation or None,
            digest=spec.digest,
        )

    def _touch(self, spec: Any) -> None:
        import time

        with self._lock:
            self._last_used[spec] = time.monotonic()

    def _get(self, spec: Any | None) -> ShardGroup:
        """The ``ShardGroup`` of ``spec`` (loaded if needed); newest spec asked for is current.

        ``_held`` / ``_last_used`` are only changed under the lock (Serve runs sync methods in
        a thread pool, so calls for different generations can race)."""
        import time

        from serving.layout import GroupSpec

        spec = self._default if spec is None else GroupSpec(*spec)
        group = self._held.get(spec)
        if group is None:
            group = self._load_held(spec)
        now = time.monotonic()
        with self._lock:
            self._last_used[spec] = now
            if spec != self._current:
                self._current = spec
                self._metrics.codes(self.group, group.ntotal)
            for old in [s for s in self._held if s != spec]:
                if now - self._last_used.get(old, 0.0) > self.retain_s:
                    logger.info("searcher group %d: dropping %s", self.group, old)
                    self._held.pop(old, None)
                    self._last_used.pop(old, None)
        return group

    def _load_held(self, spec: Any) -> ShardGroup:
        """Load ``spec`` once and hold it (one load at a time; searches of held generations
        are not blocked by a load)."""
        with self._load_lock:
            with self._lock:
                group = self._held.get(spec)
            if group is None:
                logger.info("searcher group %d: loading %s", self.group, spec)
                group = self._load(spec)
                with self._lock:
                    self._held[spec] = group
            return group

    def search(
        self, codes: np.ndarray, k: int, nprobe: int | None = None, spec: Any | None = None
    ) -> GroupHits:
        """``ShardGroup.search`` on the generation ``spec`` names."""
        return self._get(spec).search(codes, k, nprobe)

    def lookup(
        self, ids: Sequence[int] | np.ndarray, spec: Any | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``ShardGroup.lookup`` on the generation ``spec`` names."""
        return self._get(spec).lookup(ids)

    def stats(self, spec: Any | None = None) -> dict[str, Any]:
        """``ShardGroup.stats`` plus this replica's identity and the generations it holds."""
        out = self._get(spec).stats()
        out["group"] = self.group
        out["replica"] = _replica_id()
        with self._lock:
            out["held_generations"] = sorted({s.generation for s in self._held})
        return out

    def prepare(self, spec: Any) -> dict[str, Any]:
        """Load ``spec`` (a ``GroupSpec``) without switching to it; returns this replica's id."""
        from serving.layout import GroupSpec

        spec = GroupSpec(*spec)
        group = self._held.get(spec) or self._load_held(spec)
        self._touch(spec)
        return {
            "replica": _replica_id(),
            "generation": group.generation,
            "manifest_digest": group.digest,
            "ntotal": group.ntotal,
        }

    def actor_name(self) -> str | None:
        """Name of this replica's Ray actor (namespace ``serve``), e.g. for fault tests."""
        import ray

        return ray.get_runtime_context().get_actor_name()


def _replica_id() -> str:
    try:
        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # not inside a Serve replica
        return "local"


#: Ray Serve deployment of ``SearcherCore``; give each group its own ``name`` via ``.options``.
Searcher = serve.deployment(
    SearcherCore,
    name="Searcher",
    num_replicas=1,
    ray_actor_options={"num_cpus": 0.25},
    health_check_period_s=2.0,
    health_check_timeout_s=10.0,
)
