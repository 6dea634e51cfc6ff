"""The index-type adapter interface and what every adapter shares (file I/O, checks, ordering).

An adapter wraps one FAISS binary index of its type and gives every type the same surface:
``train`` (if the type needs it), ``add(codes, ids)``, ``search(codes, k, **search_params)``
returning ``(D int32[nq, k], I int64[nq, k])`` ordered by ``(distance, id)`` (empty slots: id
``-1``, distance ``MISSING_DISTANCE``), ``remove(ids)`` where the type can, ``save`` (atomic,
returns ``(sha256, bytes)``), ``load`` (sha256 verified, memory-mapped where possible),
``ntotal`` and ``memory_bytes``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from indexer import storage
from odh_core.packing import check_n_bits

if TYPE_CHECKING:
    import faiss

logger = logging.getLogger(__name__)

#: Distance of an empty result slot (id ``-1``), what FAISS binary indexes use as well.
MISSING_DISTANCE: int = int(np.iinfo(np.int32).max)

__all__ = [
    "MISSING_DISTANCE",
    "IndexType",
    "check_codes",
    "check_ids",
    "read_index_file",
    "sort_rows",
    "write_index_file",
]


def check_codes(codes: np.ndarray, n_bits: int, name: str = "codes") -> np.ndarray:
    """``codes`` as a C-contiguous ``uint8[n, n_bits/8]`` array; ValueError naming ``name``."""
    arr = np.asarray(codes)
    if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] * 8 != n_bits:
        raise ValueError(
            f"{name} must be uint8[n, {n_bits // 8}] (packed {n_bits}-bit codes), "
            f"got {arr.dtype}{list(arr.shape)}"
        )
    return np.ascontiguousarray(arr)


def check_ids(ids: np.ndarray, n: int | None = None, name: str = "ids") -> np.ndarray:
    """``ids`` as ``int64[n]`` of non-negative integers; ValueError naming ``name``."""
    arr = np.asarray(ids)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-D integer array, got {arr.dtype}{list(arr.shape)}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name}: {arr.shape[0]} ids for {n} codes")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be >= 0 (-1 marks an empty result slot)")
    return arr


def check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


def sort_rows(d: np.ndarray, i: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Order each row by ``(distance, id)``, empty slots (id < 0) last; keep ``k`` columns."""
    d = np.asarray(d, dtype=np.int64)
    i = np.asarray(i, dtype=np.int64)
    empty = i < 0
    sd = np.where(empty, np.iinfo(np.int64).max, d)
    si = np.where(empty, np.iinfo(np.int64).max, i)
    order = np.lexsort((si, sd), axis=-1)[:, :k]
    out_i = np.take_along_axis(i, order, axis=1)
    out_d = np.take_along_axis(d, order, axis=1)
    out_empty = out_i < 0
    out_d = np.where(out_empty, MISSING_DISTANCE, out_d).astype(np.int32)
    out_i = np.where(out_empty, -1, out_i)
    if out_d.shape[1] < k:
        pad = k - out_d.shape[1]
        out_d = np.pad(out_d, ((0, 0), (0, pad)), constant_values=MISSING_DISTANCE)
        out_i = np.pad(out_i, ((0, 0), (0, pad)), constant_values=-1)
    return out_d, out_i


def write_index_file(
    index: faiss.IndexBinary, uri: str, storage_options: dict[str, Any] | None = None
) -> tuple[str, int]:
    """Write a FAISS binary index atomically (temp file + rename locally, one put remotely);
    returns ``(sha256, bytes)``."""
    import faiss

    fs, path = storage.url_to_fs(uri, storage_options)
    if storage.is_local(fs):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            faiss.write_index_binary(index, tmp)
            digest = storage.sha256_of(tmp)
            size = os.path.getsize(tmp)
            storage.replace_local(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return digest, size
    data = faiss.serialize_index_binary(index).tobytes()
    storage.write_bytes_atomic(uri, data, storage_options)
    return storage.sha256_bytes(data), len(data)


def read_index_file(
    uri: str,
    expected_sha256: str | None = None,
    *,
    mmap: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> faiss.IndexBinary:
    """Read a FAISS binary index, checking its sha256 (ValueError naming the file).

    ``mmap=True`` memory-maps a local file (``IO_FLAG_MMAP``; the index is then read-only).
    """
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
    return faiss.deserialize_index_binary(np.frombuffer(data, dtype=np.uint8))


class IndexType:
    """Base of the index-type adapters (see the module docstring).

    Class attributes: ``name`` (registry key), ``Params`` (frozen, validated build parameters),
    ``search_params`` (names ``search`` accepts), ``needs_training``, ``can_remove``.
    ``search_defaults`` (instance): values used for search parameters a call omits (e.g. the
    manifest's recommended ``nprobe``).
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type] = object
    search_params: ClassVar[tuple[str, ...]] = ()
    needs_training: ClassVar[bool] = False
    can_remove: ClassVar[bool] = False
    #: Search arrays derived from the FAISS index (types that have them), reset by ``_changed``.
    _scan: Any = None

    def __init__(self, n_bits: int, params: Any = None) -> None:
        self.n_bits = check_n_bits(n_bits, "n_bits")
        if params is None:
            params = self.Params()
        if not isinstance(params, self.Params):
            raise TypeError(
                f"index type {self.name!r}: params must be {self.Params.__name__}, "
                f"got {type(params).__name__}"
            )
        self.params = params
        self.search_defaults: dict[str, Any] = {}

    # -- what every adapter implements ------------------------------------------------------
    @property
    def ntotal(self) -> int:
        raise NotImplementedError

    @property
    def memory_bytes(self) -> int:
        raise NotImplementedError

    @property
    def is_trained(self) -> bool:
        return True

    def train(self, codes: np.ndarray) -> None:
        """Train on ``codes`` (a no-op for types that need no training)."""
        check_codes(codes, self.n_bits)

    def _writable(self, op: str) -> faiss.IndexBinary | None:
        """Hook: the FAISS index ``add`` / ``remove`` (``op``) write to, once the type's
        precondition holds (else ValueError naming the type); ``None``: nothing to remove."""
        return self.faiss_index()

    def _changed(self) -> None:
        """Hook after ``add`` / ``remove``: drop what was derived from the index (the scan
        arrays of ``flat`` and ``ivf``, rebuilt on the next search)."""
        self._scan = None

    def add(self, codes: np.ndarray, ids: np.ndarray) -> None:
        """Add ``codes uint8[n, n_bits/8]`` under ``ids int64[n]`` (checked, then the type's
        precondition, e.g. ``ivf`` must be trained)."""
        codes = check_codes(codes, self.n_bits)
        ids = check_ids(ids, len(codes))
        index = self._writable("add")
        if len(ids):
            index.add_with_ids(codes, ids)
        self._changed()

    def _search(
        self, codes: np.ndarray, k: int, threads: int, params: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids``; returns how many were removed. Types that cannot: ValueError."""
        import faiss

        if not self.can_remove:
            raise ValueError(
                f"index type {self.name!r} cannot remove ids (FAISS {self.faiss_class} has no "
                "remove_ids); rebuild the index without them, or use index type 'ivf' or 'flat'"
            )
        ids = check_ids(ids)
        index = self._writable("remove")
        if index is None or not len(ids):
            return 0
        removed = int(index.remove_ids(faiss.IDSelectorBatch(ids)))
        self._changed()
        return removed

    faiss_class: ClassVar[str] = ""

    def faiss_index(self) -> faiss.IndexBinary:
        """The FAISS index this adapter saves."""
        raise NotImplementedError

    @classmethod
    def from_faiss(cls, index: faiss.IndexBinary, params: Any = None) -> IndexType:
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------
    def search(
        self, codes: np.ndarray, k: int, *, threads: int = 1, **search_params: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of ``codes uint8[nq, n_bits/8]``, ordered by ``(distance, id)``.

        ``search_params``: the type's own (``search_params``); omitted ones come from
        ``search_defaults``. ``threads``: split the batch over this many scan threads.
        """
        codes = check_codes(codes, self.n_bits)
        k = check_k(k)
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
        return self._search(codes, k, threads, self.resolve_search_params(search_params))

    def resolve_search_params(self, given: dict[str, Any]) -> dict[str, Any]:
        """``given`` (``None`` dropped) over ``search_defaults``; unknown names: TypeError."""
        unknown = sorted(set(given) - set(self.search_params))
        if unknown:
            raise TypeError(
                f"index type {self.name!r} has no search parameter(s) {unknown} "
                f"(it takes {list(self.search_params)})"
            )
        out = {k: v for k, v in self.search_defaults.items() if k in self.search_params}
        out.update({k: v for k, v in given.items() if v is not None})
        return out

    def save(self, uri: str, storage_options: dict[str, Any] | None = None) -> tuple[str, int]:
        """Write the index to ``uri`` atomically; returns ``(sha256, bytes)``."""
        return write_index_file(self.faiss_index(), uri, storage_options)

    @classmethod
    def load(
        cls,
        uri: str,
        *,
        params: Any = None,
        sha256: str | None = None,
        mmap: bool = False,
        storage_options: dict[str, Any] | None = None,
    ) -> IndexType:
        """Read an index file written by ``save`` (sha256 checked when given)."""
        index = read_index_file(uri, sha256, mmap=mmap, storage_options=storage_options)
        try:
            return cls.from_faiss(index, params)
        except TypeError as exc:
            raise ValueError(f"{uri}: {exc}") from None

    def params_json(self) -> dict[str, Any]:
        """The build parameters as a JSON-ready dict (what the manifest records)."""
        return dataclasses.asdict(self.params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_bits={self.n_bits}, ntotal={self.ntotal}, {self.params})"
