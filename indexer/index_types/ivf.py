"""``ivf``: FAISS ``IndexBinaryIVF`` over a trained binary k-means coarse quantizer.

Search (``nprobe``) does not call FAISS's scan: the inverted lists are copied once into one
contiguous array (``scan.ListScan``) and scanned by the tie-exact kernel over the lists the
IVF's own quantizer picks — FAISS's probes, exact ``(distance, id)`` order. Shards of one index
share the quantizer, so ``IvfIndex.merged`` joins their lists into one scan array.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer.index_types.base import IndexType, check_codes
from indexer.index_types.registry import register_index_type
from indexer.index_types.scan import ListScan, to_words
from indexer.quantizer import QUANTIZERS, default_nlist, empty_ivf, train_ivf

if TYPE_CHECKING:
    import faiss

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IvfParams:
    """``nlist`` (``None``: about ``4·sqrt(n)`` at training), coarse ``quantizer`` (``flat`` or
    ``hnsw`` with degree ``hnsw_m``), k-means ``train_size`` / ``seed`` / ``niter``."""

    nlist: int | None = None
    quantizer: str = "flat"
    hnsw_m: int = 16
    train_size: int = 100_000
    seed: int = 0
    niter: int = 20

    def __post_init__(self) -> None:
        if self.nlist is not None and (isinstance(self.nlist, bool) or self.nlist < 1):
            raise ValueError(f"IvfParams.nlist must be >= 1, got {self.nlist!r}")
        if self.quantizer not in QUANTIZERS:
            raise ValueError(
                f"IvfParams.quantizer must be one of {QUANTIZERS}, got {self.quantizer!r}"
            )
        if self.hnsw_m < 2:
            raise ValueError(f"IvfParams.hnsw_m must be >= 2, got {self.hnsw_m}")
        if self.train_size < 1:
            raise ValueError(f"IvfParams.train_size must be >= 1, got {self.train_size}")
        if self.niter < 1:
            raise ValueError(f"IvfParams.niter must be >= 1, got {self.niter}")


def list_contents(ivf: faiss.IndexBinaryIVF) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(codes uint8[n, code_size], ids int64[n], sizes int64[nlist])`` of an IVF, list by list."""
    import faiss

    il = faiss.downcast_InvertedLists(ivf.invlists)
    cs = int(il.code_size)
    nlist = int(ivf.nlist)
    sizes = np.array([il.list_size(lst) for lst in range(nlist)], dtype=np.int64)
    offsets = np.zeros(nlist + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    codes = np.empty((int(offsets[-1]), cs), dtype=np.uint8)
    ids = np.empty(int(offsets[-1]), dtype=np.int64)
    for lst in np.flatnonzero(sizes).tolist():
        lo, hi = int(offsets[lst]), int(offsets[lst + 1])
        ptr = il.get_codes(lst)
        try:
            faiss.memcpy(faiss.swig_ptr(codes[lo:hi]), ptr, (hi - lo) * cs)
        finally:
            il.release_codes(lst, ptr)
        ptr = il.get_ids(lst)
        try:
            faiss.memcpy(faiss.swig_ptr(ids[lo:hi]), ptr, (hi - lo) * 8)
        finally:
            il.release_ids(lst, ptr)
    return codes, ids, sizes


def _centroids(ivf: faiss.IndexBinaryIVF) -> np.ndarray:
    import faiss

    q = faiss.downcast_IndexBinary(ivf.quantizer)
    return q.reconstruct_n(0, int(q.ntotal))


@register_index_type
class IvfIndex(IndexType):
    """Adapter of ``IndexBinaryIVF``; search parameter ``nprobe`` (omitted: ``search_defaults``
    or else every list, i.e. exact)."""

    name = "ivf"
    Params = IvfParams
    search_params = ("nprobe",)
    needs_training = True
    can_remove = True
    faiss_class = "IndexBinaryIVF"

    def __init__(self, n_bits: int, params: IvfParams | None = None, *, index: Any = None) -> None:
        super().__init__(n_bits, params)
        self._index = index
        self._scan: ListScan | None = None

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_faiss(cls, index: Any, params: IvfParams | None = None) -> IvfIndex:
        import faiss

        # no downcast here: a downcast wrapper does not own the index, and the owning one
        # passed in would be freed with it
        if not isinstance(index, faiss.IndexBinaryIVF):
            raise TypeError(f"expected an IndexBinaryIVF, got {type(index).__name__}")
        if params is None:
            params = IvfParams(nlist=int(index.nlist))
        return cls(int(index.d), params, index=index)

    @property
    def is_trained(self) -> bool:
        return self._index is not None and bool(self._index.is_trained)

    @property
    def nlist(self) -> int:
        if self._index is None:
            if self._scan is not None:
                return self._scan.nlist
            raise ValueError("index type 'ivf': not trained yet (call train first)")
        return int(self._index.nlist)

    def train(self, codes: np.ndarray) -> None:
        codes = check_codes(codes, self.n_bits)
        p = self.params
        nlist = p.nlist if p.nlist is not None else default_nlist(len(codes))
        self._index = train_ivf(
            codes, self.n_bits, nlist, train_size=p.train_size, seed=p.seed, niter=p.niter,
            quantizer=p.quantizer, hnsw_m=p.hnsw_m,
        )  # fmt: skip
        self._scan = None

    def _writable(self, op: str) -> Any:
        if op == "add" and not self.is_trained:
            raise ValueError("index type 'ivf': train before add")
        return self._index  # None (nothing to remove) for a search-only merge

    def faiss_index(self) -> Any:
        if self._index is None:
            raise ValueError(
                "index type 'ivf': no FAISS index (not trained, or a search-only merge)"
            )
        return self._index

    @property
    def ntotal(self) -> int:
        if self._scan is not None and self._index is None:
            return self._scan.ntotal
        return 0 if self._index is None else int(self._index.ntotal)

    @property
    def memory_bytes(self) -> int:
        """Bytes of the scan arrays (codes, ids, offsets) and the centroids."""
        if self._index is None:
            return 0 if self._scan is None else self._scan.memory_bytes
        scan = self._scan.memory_bytes if self._scan is not None else 0
        codes = int(self._index.ntotal) * (self.n_bits // 8 + 8) if self._scan is None else 0
        return scan + codes + int(self._index.nlist) * (self.n_bits // 8)

    # -- search ------------------------------------------------------------------------------
    def scan(self) -> ListScan:
        """The contiguous scan arrays (built on first use, rebuilt after add/remove)."""
        if self._scan is None:
            if self._index is None:
                raise ValueError("index type 'ivf': not trained yet (call train first)")
            self._scan = _build_scan([self._index])
        return self._scan

    def _search(
        self, codes: np.ndarray, k: int, threads: int, params: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray]:
        scan = self.scan()
        nprobe = params.get("nprobe", scan.nlist)
        if isinstance(nprobe, bool) or not isinstance(nprobe, int | np.integer) or nprobe < 1:
            raise ValueError(f"nprobe must be an integer >= 1, got {nprobe!r}")
        return scan.search(codes, k, int(nprobe), threads)

    @classmethod
    def merged(cls, parts: Sequence[IvfIndex]) -> IvfIndex:
        """One searchable IVF over the lists of ``parts`` (shards sharing one quantizer): the
        lists are joined into one scan array; the parts' FAISS indexes are not kept (nothing
        to save or add to: the result only searches)."""
        if not parts:
            raise ValueError("merged: no parts given")
        indexes = [p.faiss_index() for p in parts]
        first = indexes[0]
        for j, ix in enumerate(indexes[1:], 1):
            if ix.nlist != first.nlist or ix.d != first.d:
                raise ValueError(f"merged: part {j} has nlist/d {ix.nlist}/{ix.d}, "
                                 f"part 0 {first.nlist}/{first.d}")  # fmt: skip
        c0 = _centroids(first)
        for j, ix in enumerate(indexes[1:], 1):
            if not np.array_equal(_centroids(ix), c0):
                raise ValueError(f"merged: part {j} has another quantizer than part 0")
        out = cls(parts[0].n_bits, parts[0].params)
        out._scan = _build_scan(indexes)
        out.search_defaults = dict(parts[0].search_defaults)
        return out


def _build_scan(indexes: Sequence[Any]) -> ListScan:
    """One ``ListScan`` over the inverted lists of IVFs sharing a quantizer (list by list)."""
    import faiss

    nlist = int(indexes[0].nlist)
    parts = [list_contents(ix) for ix in indexes]
    if len(parts) == 1:
        codes, ids, sizes = parts[0]
    else:
        codes = np.concatenate([p[0] for p in parts])
        ids = np.concatenate([p[1] for p in parts])
        lists = np.concatenate([np.repeat(np.arange(nlist), p[2]) for p in parts])
        order = np.argsort(lists, kind="stable")
        codes, ids = codes[order], ids[order]
        sizes = np.sum([p[2] for p in parts], axis=0)
    offsets = np.zeros(nlist + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    # the quantizer is cloned so the scan does not keep the (possibly large) IVFs alive
    quantizer = faiss.clone_binary_index(faiss.downcast_IndexBinary(indexes[0].quantizer))
    return ListScan(to_words(codes), ids, offsets, quantizer)


def empty_trained(quantizer_bytes: bytes, params: IvfParams | None = None) -> IvfIndex:
    """An empty adapter from the serialised trained IVF (the shared quantizer file)."""
    from indexer.quantizer import index_from_bytes

    return IvfIndex.from_faiss(index_from_bytes(quantizer_bytes), params)


__all__ = ["IvfIndex", "IvfParams", "empty_ivf", "empty_trained", "list_contents"]
