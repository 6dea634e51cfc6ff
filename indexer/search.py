"""The one search path: a group of shards of an index directory, loaded as ONE searchable.

Every caller — Serve searcher replicas (``serving.searcher.ShardGroup``), benchmarks and tests —
searches through :class:`GroupIndex`. Shards are a build and storage unit; on load they become one
searchable per group:

- ``ivf``: the shards share one coarse quantizer, so their inverted lists are joined list by list
  into one contiguous scan array (``IvfIndex.merged``) and one scan answers for all of them;
- ``flat``: the shards' codes are concatenated into one array (``FlatIndex.merged``);
- ``hnsw``: each shard is its own graph; they are searched one by one and merged by
  ``(distance, id)`` (:func:`merge_topk`).

Results are ``(D int32[nq, k], I int64[nq, k])`` ordered by ``(distance, id)``; ``ivf`` and
``flat`` are tie-exact (the exact ``(distance, id)`` top-k of the probed codes, whatever the
number of shards). Search parameters a call omits come from the manifest's ``search_defaults``
(chosen at build time, see :func:`recommend_search_defaults`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from indexer.index_types.base import MISSING_DISTANCE, IndexType, check_codes, check_k
from indexer.index_types.registry import get_index_type
from indexer.manifest import Manifest, load_manifest

logger = logging.getLogger(__name__)

#: Distance written next to a padding id ``-1`` (what FAISS binary indexes use as well).
PAD_DISTANCE: int = MISSING_DISTANCE
_ID_SENTINEL = np.iinfo(np.int64).max

__all__ = [
    "PAD_DISTANCE",
    "GroupIndex",
    "merge_topk",
    "open_index",
    "recommend_search_defaults",
]


def merge_topk(
    distances: Sequence[np.ndarray], ids: Sequence[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge result blocks (per shard or per searcher group) into the top-``k`` per query row.

    Args:
        distances: one ``int[nq, k_i]`` block per source (same ``nq``, any ``k_i``).
        ids: the matching ``int64[nq, k_i]`` blocks; ``-1`` marks padding and is dropped.
        k: number of neighbours to keep (≥ 1).

    Returns:
        ``(D int32[nq, k], I int64[nq, k])`` ordered by ``(distance, id)``; rows with fewer
        than ``k`` real neighbours end with ``-1`` ids and ``PAD_DISTANCE``. Exact when every
        block is the ``(distance, id)`` top-k of its source.
    """
    k = check_k(k)
    if len(distances) != len(ids):
        raise ValueError(
            f"distances and ids must have the same number of blocks, got {len(distances)} "
            f"and {len(ids)}"
        )
    if len(distances) == 0:
        raise ValueError("distances: need at least one result block")
    d_blocks = [np.asarray(d) for d in distances]
    i_blocks = [np.asarray(i) for i in ids]
    nq = d_blocks[0].shape[0] if d_blocks[0].ndim == 2 else -1
    for b, (d, i) in enumerate(zip(d_blocks, i_blocks, strict=True)):
        if d.ndim != 2 or i.ndim != 2 or d.shape != i.shape or d.shape[0] != nq:
            raise ValueError(
                f"block {b}: distances {d.shape} and ids {i.shape} must both be [nq={nq}, k_i]"
            )
    dist = np.concatenate([d.astype(np.int64, copy=False) for d in d_blocks], axis=1)
    idx = np.concatenate([i.astype(np.int64, copy=False) for i in i_blocks], axis=1)
    valid = idx >= 0
    sort_dist = np.where(valid, dist, _ID_SENTINEL)
    sort_ids = np.where(valid, idx, _ID_SENTINEL)
    order = np.lexsort((sort_ids, sort_dist), axis=-1)[:, :k]  # last key primary
    top_ids = np.take_along_axis(idx, order, axis=1)
    top_dist = np.take_along_axis(dist, order, axis=1)
    top_valid = np.take_along_axis(valid, order, axis=1)
    out_d = np.full((nq, k), PAD_DISTANCE, dtype=np.int32)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    width = order.shape[1]
    out_d[:, :width] = np.where(top_valid, top_dist, PAD_DISTANCE)
    out_i[:, :width] = np.where(top_valid, top_ids, -1)
    return out_d, out_i


class GroupIndex:
    """Shards ``shards`` of one index generation as one searchable (see the module docstring).

    Build it with :func:`open_index`. ``search(codes, k, threads=1, **search_params)``.
    """

    def __init__(
        self, manifest: Manifest, parts: Sequence[IndexType], shard_ntotal: Sequence[int]
    ) -> None:
        if not parts:
            raise ValueError("GroupIndex: no shards")
        self.manifest = manifest
        self.index_type = manifest.index_type
        self.n_bits = int(manifest.n_bits)
        self.shard_ntotal = [int(n) for n in shard_ntotal]
        cls = get_index_type(self.index_type)
        merged = getattr(cls, "merged", None)
        if merged is not None:
            self._parts = [merged(parts)]  # one scan array: the FAISS shard indexes are dropped
        else:
            self._parts = list(parts)
        self.search_params = cls.search_params
        self.search_defaults = {
            k: v for k, v in manifest.search_defaults.items() if k in cls.search_params
        }
        for p in self._parts:
            p.search_defaults = dict(self.search_defaults)

    @property
    def ntotal(self) -> int:
        return sum(p.ntotal for p in self._parts)

    @property
    def memory_bytes(self) -> int:
        return sum(p.memory_bytes for p in self._parts)

    def search(
        self, codes: np.ndarray, k: int, *, threads: int = 1, **search_params: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of ``codes uint8[nq, n_bits/8]`` over the group, by ``(distance, id)``.

        ``search_params`` are the index type's (``nprobe`` for ivf, ``ef_search`` for hnsw;
        ``None`` or omitted: the manifest's ``search_defaults``, else the type's own default —
        for ivf every list, i.e. exact). An ``nprobe`` above ``nlist`` is clipped.
        """
        if len(self._parts) == 1:
            return self._parts[0].search(codes, k, threads=threads, **search_params)
        codes = check_codes(codes, self.n_bits)
        blocks = [p.search(codes, k, threads=threads, **search_params) for p in self._parts]
        return merge_topk([d for d, _ in blocks], [i for _, i in blocks], k)


def open_index(
    index_dir: str,
    shards: Sequence[int] | None = None,
    *,
    manifest: Manifest | None = None,
    verify: bool = True,
    mmap: bool | Sequence[bool] = False,
    storage_options: dict[str, Any] | None = None,
) -> GroupIndex:
    """Load ``shards`` (shard numbers; ``None``: all) of ``index_dir`` as one :class:`GroupIndex`.

    ``manifest``: the generation to load (default: the current ``manifest.json``). ``mmap``: one
    flag for all shards or one per shard (local files only).
    """
    from indexer.shards import load_shard

    if manifest is None:
        manifest = load_manifest(index_dir, storage_options).manifest
    by_number = {int(e.shard): e for e in manifest.shards}
    numbers = list(by_number) if shards is None else [int(s) for s in shards]
    if not numbers:
        raise ValueError("shards: a group needs at least one shard")
    for s in numbers:
        if s not in by_number:
            raise ValueError(f"shards: shard {s} is not in {index_dir}/manifest.json")
    flags = [bool(mmap)] * len(numbers) if isinstance(mmap, bool) else [bool(m) for m in mmap]
    if len(flags) != len(numbers):
        raise ValueError(f"mmap: {len(flags)} flags for {len(numbers)} shards")
    parts = [
        load_shard(
            index_dir,
            by_number[s],
            manifest=manifest,
            verify=verify,
            mmap=m,
            storage_options=storage_options,
        )
        for s, m in zip(numbers, flags, strict=True)
    ]
    return GroupIndex(manifest, parts, [by_number[s].ntotal for s in numbers])


def recommend_search_defaults(
    index: IndexType | GroupIndex,
    codes: np.ndarray,
    *,
    target_recall: float = 0.95,
    n_queries: int = 200,
    k: int = 10,
    seed: int = 0,
) -> tuple[dict[str, Any], float | None]:
    """The cheapest search parameter reaching tie-aware recall@``k`` >= ``target_recall``.

    ``n_queries`` codes sampled (seeded) from ``codes`` — the indexed codes — are the queries;
    the truth is exact search over ``codes`` (a hit counts if its distance is at most the true
    k-th distance). ivf: the smallest ``nprobe`` in 1, 2, 4, ... (``nlist`` if none reaches it);
    hnsw: the smallest ``ef_search`` in 16, 32, ... 4096; flat: nothing to choose (``{}``).
    Returns ``(params, recall)``, e.g. ``({"nprobe": 8}, 0.97)``; ``({}, None)`` for flat.
    """
    import faiss

    params = tuple(getattr(index, "search_params", ()))
    if not params:
        return {}, None
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    n = len(codes)
    k = min(k, n)
    rng = np.random.default_rng(seed)
    queries = codes[np.sort(rng.choice(n, min(n_queries, n), replace=False))]
    exact = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    exact.add(codes)
    true_d, _ = exact.search(queries, k)
    kth = true_d[:, -1:]

    def recall(**p: Any) -> float:
        d, i = index.search(queries, k, **p)
        return float(((d <= kth) & (i >= 0)).sum() / (len(queries) * k))

    name = params[0]
    if name == "nprobe":
        nlist = int(index.manifest.nlist if isinstance(index, GroupIndex) else index.nlist)
        steps = [v for v in (2**e for e in range(31)) if v < nlist] + [nlist]
    else:
        steps = [16 * 2**e for e in range(9)]
    value, got = steps[-1], None
    for v in steps:
        got = recall(**{name: v})
        if got >= target_recall:
            value = v
            break
    logger.info("search defaults: %s=%d gives recall@%d %.3f", name, value, k, got)
    return {name: int(value)}, float(got)
