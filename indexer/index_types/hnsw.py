"""``hnsw``: FAISS ``IndexBinaryHNSW`` graph (under an id map), approximate.

Build parameters ``M`` (graph degree) and ``ef_construction``; search parameter ``ef_search``.
Results are FAISS's top-k re-ordered by ``(distance, id)``. **Cannot remove**: FAISS's binary
HNSW has no ``remove_ids``, and this adapter refuses deletes (``remove`` raises ValueError naming
the type) rather than filtering tombstones at search time, which would silently return fewer
than ``k`` hits once enough neighbours are deleted. Delete by rebuilding without the ids.
Appends add nodes to the graph. Shards of an ``hnsw`` index are separate graphs, searched one by
one and merged by ``(distance, id)`` (``indexer.search``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer.index_types.base import IndexType, sort_rows
from indexer.index_types.registry import register_index_type
from indexer.index_types.scan import run_blocks

logger = logging.getLogger(__name__)

#: FAISS's default ``efSearch``, used when neither the call nor ``search_defaults`` give one.
DEFAULT_EF_SEARCH = 16


@dataclass(frozen=True)
class HnswParams:
    """``M``: neighbours per node (graph degree); ``ef_construction``: build-time beam width."""

    M: int = 32
    ef_construction: int = 40

    def __post_init__(self) -> None:
        if isinstance(self.M, bool) or not isinstance(self.M, int) or self.M < 2:
            raise ValueError(f"HnswParams.M must be an integer >= 2, got {self.M!r}")
        if (
            isinstance(self.ef_construction, bool)
            or not isinstance(self.ef_construction, int)
            or self.ef_construction < 1
        ):
            raise ValueError(
                f"HnswParams.ef_construction must be an integer >= 1, got {self.ef_construction!r}"
            )


@register_index_type
class HnswIndex(IndexType):
    """Adapter of ``IndexBinaryIDMap(IndexBinaryHNSW)``; search parameter ``ef_search``."""

    name = "hnsw"
    Params = HnswParams
    search_params = ("ef_search",)
    needs_training = False
    can_remove = False
    faiss_class = "IndexBinaryHNSW"

    def __init__(self, n_bits: int, params: HnswParams | None = None, *, index: Any = None) -> None:
        import faiss

        super().__init__(n_bits, params)
        if index is None:
            inner = faiss.IndexBinaryHNSW(self.n_bits, self.params.M)
            inner.hnsw.efConstruction = self.params.ef_construction
            index = faiss.IndexBinaryIDMap(inner)
            index.own_fields = True
            inner.this.disown()
        self._index = index
        self._inner = faiss.downcast_IndexBinary(index.index)

    @classmethod
    def from_faiss(cls, index: Any, params: HnswParams | None = None) -> HnswIndex:
        import faiss

        # no downcast here: a downcast wrapper does not own the index, and the owning one
        # passed in would be freed with it
        inner = (
            faiss.downcast_IndexBinary(index.index)
            if isinstance(index, faiss.IndexBinaryIDMap)
            else None
        )
        if not isinstance(inner, faiss.IndexBinaryHNSW):
            raise TypeError(
                f"expected an IndexBinaryIDMap over an IndexBinaryHNSW, got {type(index).__name__}"
            )
        if params is None:
            params = HnswParams(
                M=int(inner.hnsw.nb_neighbors(1)), ef_construction=int(inner.hnsw.efConstruction)
            )
        return cls(int(index.d), params, index=index)

    def faiss_index(self) -> Any:
        return self._index

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def memory_bytes(self) -> int:
        """Codes, ids and the graph's neighbour lists (int32 each) and level offsets."""
        n = int(self._index.ntotal)
        links = int(self._inner.hnsw.neighbors.size()) * 4
        return n * (self.n_bits // 8 + 8) + links + int(self._inner.hnsw.offsets.size()) * 8

    def _search(
        self, codes: np.ndarray, k: int, threads: int, params: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        ef = params.get("ef_search", DEFAULT_EF_SEARCH)
        if isinstance(ef, bool) or not isinstance(ef, int | np.integer) or ef < 1:
            raise ValueError(f"ef_search must be an integer >= 1, got {ef!r}")
        sp = faiss.SearchParametersHNSW(efSearch=int(ef))
        nq = len(codes)
        out_d = np.empty((nq, k), dtype=np.int32)
        out_i = np.empty((nq, k), dtype=np.int64)

        def block(lo: int, hi: int) -> None:
            d, i = self._index.search(codes[lo:hi], k, params=sp)
            out_d[lo:hi], out_i[lo:hi] = sort_rows(d, i, k)

        run_blocks(nq, threads, block)
        return out_d, out_i
