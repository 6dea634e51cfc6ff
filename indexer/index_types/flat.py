"""``flat``: exact search over every code (FAISS ``IndexBinaryFlat`` storage under an id map).

Search scans all codes with the tie-exact kernel (``scan.ListScan`` with one list): the exact
``(distance, id)`` top-k. Shards are concatenated into one scan array by ``FlatIndex.merged``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer.index_types.base import IndexType
from indexer.index_types.registry import register_index_type
from indexer.index_types.scan import ListScan, to_words

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlatParams:
    """``flat`` has no build parameters."""


def _contents(index: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(codes uint8[n, code_size], ids int64[n])`` of an ``IndexBinaryIDMap(IndexBinaryFlat)``."""
    import faiss

    inner = faiss.downcast_IndexBinary(index.index)
    n, cs = int(inner.ntotal), int(inner.code_size)
    codes = faiss.vector_to_array(inner.xb).reshape(n, cs)
    ids = faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)
    return codes, ids


@register_index_type
class FlatIndex(IndexType):
    """Adapter of ``IndexBinaryIDMap(IndexBinaryFlat)``; no search parameters."""

    name = "flat"
    Params = FlatParams
    search_params = ()
    needs_training = False
    can_remove = True
    faiss_class = "IndexBinaryFlat"

    def __init__(self, n_bits: int, params: FlatParams | None = None, *, index: Any = None) -> None:
        import faiss

        super().__init__(n_bits, params)
        if index is None:
            inner = faiss.IndexBinaryFlat(self.n_bits)
            index = faiss.IndexBinaryIDMap(inner)
            index.own_fields = True
            inner.this.disown()  # the id map owns (and frees) it now
        self._index = index
        self._scan: ListScan | None = None

    @classmethod
    def from_faiss(cls, index: Any, params: FlatParams | None = None) -> FlatIndex:
        import faiss

        # no downcast here: a downcast wrapper does not own the index, and the owning one
        # passed in would be freed with it
        ok = isinstance(index, faiss.IndexBinaryIDMap) and isinstance(
            faiss.downcast_IndexBinary(index.index), faiss.IndexBinaryFlat
        )
        if not ok:
            raise TypeError(
                f"expected an IndexBinaryIDMap over an IndexBinaryFlat, got {type(index).__name__}"
            )
        return cls(int(index.d), params, index=index)

    def _writable(self, op: str) -> Any:
        if self._index is None:
            raise ValueError(f"index type 'flat': a search-only merge cannot {op}")
        return self._index

    def faiss_index(self) -> Any:
        if self._index is None:
            raise ValueError("index type 'flat': a search-only merge has no FAISS index")
        return self._index

    @property
    def ntotal(self) -> int:
        return self._scan.ntotal if self._index is None else int(self._index.ntotal)

    @property
    def memory_bytes(self) -> int:
        if self._scan is not None:
            return self._scan.memory_bytes
        return int(self._index.ntotal) * (self.n_bits // 8 + 8)

    def scan(self) -> ListScan:
        if self._scan is None:
            codes, ids = _contents(self._index)
            self._scan = ListScan(to_words(codes), ids, np.array([0, len(ids)], dtype=np.int64))
        return self._scan

    def _search(
        self, codes: np.ndarray, k: int, threads: int, params: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.scan().search(codes, k, 1, threads)

    @classmethod
    def merged(cls, parts: Sequence[FlatIndex]) -> FlatIndex:
        """One search-only flat index over the codes of ``parts`` (concatenated)."""
        if not parts:
            raise ValueError("merged: no parts given")
        contents = [_contents(p.faiss_index()) for p in parts]
        codes = np.concatenate([c for c, _ in contents])
        ids = np.concatenate([i for _, i in contents])
        out = cls(parts[0].n_bits, parts[0].params, index=None)
        out._index = None
        out._scan = ListScan(to_words(codes), ids, np.array([0, len(ids)], dtype=np.int64))
        return out
