"""The tie-exact scan kernel: exact ``(distance, id)`` top-k of the codes in chosen lists.

An IVF index (or a flat one: a single list) is held as one contiguous ``uint64[n, words]`` array
of codes (zero-padded to a multiple of 64 bits), the matching ``int64[n]`` ids and list offsets
(``list l`` is rows ``offsets[l]:offsets[l+1]``). ``scan_lists`` walks the probed lists of every
query once, keeping a bounded max-heap ordered by ``(distance, id)``: the result is the exact
``(distance, id)``-sorted top-k of the probed set — no widening for ties, no merge. Batches are
split over a small thread pool (``run_blocks``); the kernel releases the GIL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numba import njit

from indexer.index_types.base import MISSING_DISTANCE  # noqa: F401  (re-exported)
from odh_core.packed.kernels import popcount64

logger = logging.getLogger(__name__)


def to_words(codes: np.ndarray) -> np.ndarray:
    """``uint8[n, n_bits/8]`` codes as ``uint64[n, ceil(n_bits/64)]`` (zero padding at the end)."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    n, nbytes = codes.shape
    width = -(-nbytes // 8) * 8
    if width != nbytes:
        padded = np.zeros((n, width), dtype=np.uint8)
        padded[:, :nbytes] = codes
        codes = padded
    return codes.view(np.uint64).reshape(n, width // 8)


@njit(inline="always")
def _sift_down(hd: np.ndarray, hi: np.ndarray, k: int, d: int, i: int) -> None:
    """Put ``(d, i)`` at the root of the max-heap ``(hd, hi)`` of size ``k`` and sift it down."""
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= k:
            break
        right = child + 1
        if right < k and (
            hd[right] > hd[child] or (hd[right] == hd[child] and hi[right] > hi[child])
        ):
            child = right
        if hd[child] > d or (hd[child] == d and hi[child] > i):
            hd[pos] = hd[child]
            hi[pos] = hi[child]
            pos = child
        else:
            break
    hd[pos] = d
    hi[pos] = i


@njit(inline="always")
def _heap_sort(hd: np.ndarray, hi: np.ndarray, k: int) -> None:
    """Sort a max-heap in place into ascending ``(distance, id)`` order."""
    for end in range(k - 1, 0, -1):
        d, i = hd[end], hi[end]
        hd[end] = hd[0]
        hi[end] = hi[0]
        _sift_down(hd, hi, end, d, i)


@njit(inline="always")
def _offer(hd, hi, k, d, ids, r, worst_d, worst_i):  # type: ignore[no-untyped-def]
    """Insert ``(d, ids[r])`` if it beats the heap's worst; returns the new worst. The id is read
    only when it can matter (``d`` below the worst, or tied with it)."""
    if d < worst_d:
        _sift_down(hd, hi, k, d, ids[r])
        return hd[0], hi[0]
    i = ids[r]
    if i < worst_i:  # d == worst_d here
        _sift_down(hd, hi, k, d, i)
        return hd[0], hi[0]
    return worst_d, worst_i


#: Rows per distance pass: distances of a chunk are computed first, in a loop LLVM vectorises
#: (VPOPCNTQ where the CPU has it), then offered to the heap in a second, branchy pass.
_CHUNK = 1024


@njit(inline="always")
def _scan_rows(words, ids, start, stop, q, k, hd, hi, buf):  # type: ignore[no-untyped-def]
    """Offer rows ``start:stop`` to the heap ``(hd, hi)`` (which may hold earlier rows)."""
    n_words = words.shape[1]
    worst_d = np.int64(hd[0])
    worst_i = np.int64(hi[0])
    q0 = q[0]
    q1 = q[1] if n_words > 1 else np.uint64(0)
    for c0 in range(start, stop, _CHUNK):
        m = min(_CHUNK, stop - c0)
        rows = words[c0 : c0 + m]  # a slice: no negative-index handling, so the loop vectorises
        low = np.int64(1 << 62)
        if n_words == 1:
            for j in range(m):
                d = popcount64(rows[j, 0] ^ q0)
                buf[j] = d
                low = min(low, d)
        elif n_words == 2:
            for j in range(m):
                d = popcount64(rows[j, 0] ^ q0) + popcount64(rows[j, 1] ^ q1)
                buf[j] = d
                low = min(low, d)
        else:
            for j in range(m):
                d = 0
                for w in range(n_words):
                    d += popcount64(rows[j, w] ^ q[w])
                buf[j] = d
                low = min(low, d)
        if low > worst_d:
            continue  # nothing in this chunk can enter the heap
        for j in range(m):
            d = buf[j]
            if d <= worst_d:
                worst_d, worst_i = _offer(hd, hi, k, d, ids, c0 + j, worst_d, worst_i)


@njit(inline="always")
def _heap_init(hd, hi, k):  # type: ignore[no-untyped-def]
    for j in range(k):
        hd[j] = 2147483647
        hi[j] = 9223372036854775807


@njit(inline="always")
def _heap_finish(hd, hi, k):  # type: ignore[no-untyped-def]
    _heap_sort(hd, hi, k)
    for j in range(k):
        if hi[j] == 9223372036854775807:
            hi[j] = -1


@njit(inline="always")
def _scan_one(words, ids, offsets, q, probes, k, hd, hi, buf):  # type: ignore[no-untyped-def]
    _heap_init(hd, hi, k)
    for p in range(probes.shape[0]):
        lst = probes[p]
        if lst >= 0:
            _scan_rows(words, ids, offsets[lst], offsets[lst + 1], q, k, hd, hi, buf)
    _heap_finish(hd, hi, k)


#: Rows per tile of the tiled all-codes scan: 8192 x 16 bytes stay in L2 while every query of
#: the block passes over them (one query at a time streams the whole array from memory).
_TILE = 8192


@njit(cache=True, nogil=True)
def _scan_all_tiled(words, ids, queries, k, out_d, out_i):  # type: ignore[no-untyped-def]
    """Every row for every query, tile by tile (the exact flat search of a batch)."""
    nq = queries.shape[0]
    buf = np.empty(_CHUNK, dtype=np.int64)
    for qi in range(nq):
        _heap_init(out_d[qi], out_i[qi], k)
    n = words.shape[0]
    for t0 in range(0, n, _TILE):
        t1 = min(n, t0 + _TILE)
        for qi in range(nq):
            _scan_rows(words, ids, t0, t1, queries[qi], k, out_d[qi], out_i[qi], buf)
    for qi in range(nq):
        _heap_finish(out_d[qi], out_i[qi], k)


@njit(cache=True, nogil=True)
def _scan_serial(words, ids, offsets, queries, probes, k, out_d, out_i):  # type: ignore[no-untyped-def]
    buf = np.empty(_CHUNK, dtype=np.int64)
    for qi in range(queries.shape[0]):
        _scan_one(words, ids, offsets, queries[qi], probes[qi], k, out_d[qi], out_i[qi], buf)


def _set_faiss_threads_1() -> None:
    import faiss

    faiss.omp_set_num_threads(1)


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


def _pool(n: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``n`` scan threads (created once per size); each runs FAISS with one
    OpenMP thread, so that the pool alone sets the parallelism."""
    with _POOL_LOCK:
        pool = _POOLS.get(n)
        if pool is None:
            pool = _POOLS[n] = ThreadPoolExecutor(
                n, thread_name_prefix="odh-scan", initializer=_set_faiss_threads_1
            )
        return pool


def run_blocks(nq: int, threads: int, fn: Callable[[int, int], None]) -> None:
    """Call ``fn(lo, hi)`` on contiguous blocks of ``range(nq)``: inline for one thread (or a
    small batch), else on ``threads`` pool threads (the kernels release the GIL).

    Not numba's ``prange``: its OpenMP runtime and FAISS's spin against each other on a small
    box (a 1000-query batch ran 200x slower). FAISS calls inside ``fn`` run with one OpenMP
    thread: pool threads are set so; inline, the calling thread's setting is lowered to 1 for the
    call and restored after it.
    """
    blocks = max(1, min(int(threads), nq // 16))
    if blocks <= 1:
        import faiss

        before = faiss.omp_get_max_threads()
        if before != 1:
            faiss.omp_set_num_threads(1)
        try:
            fn(0, nq)
        finally:
            if before != 1:
                faiss.omp_set_num_threads(before)  # the caller's setting is left as it was
        return
    bounds = np.linspace(0, nq, blocks + 1).astype(np.int64)
    futures = [_pool(blocks).submit(fn, int(bounds[b]), int(bounds[b + 1])) for b in range(blocks)]
    for f in futures:
        f.result()


class ListScan:
    """Codes grouped in lists, searched exactly by ``(distance, id)`` over the probed lists.

    Args:
        words: ``uint64[n, w]`` codes (``to_words``), rows of list ``l`` at
            ``offsets[l]:offsets[l+1]``; ids: ``int64[n]``; offsets: ``int64[nlist + 1]``.
        quantizer: a FAISS binary index over the ``nlist`` centroids whose ``search`` picks the
            probed lists (the IVF's own quantizer, so the probes are FAISS's), or ``None`` for a
            single list (exact flat search).
    """

    def __init__(
        self, words: np.ndarray, ids: np.ndarray, offsets: np.ndarray, quantizer: Any = None
    ) -> None:
        self.words = np.ascontiguousarray(words, dtype=np.uint64)
        self.ids = np.ascontiguousarray(ids, dtype=np.int64)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        if self.words.ndim != 2 or self.ids.shape != (self.words.shape[0],):
            raise ValueError(f"words {self.words.shape} and ids {self.ids.shape} disagree")
        if self.offsets.ndim != 1 or self.offsets[0] != 0 or self.offsets[-1] != len(self.ids):
            raise ValueError("offsets must run from 0 to the number of codes")
        self.quantizer = quantizer
        self.nlist = len(self.offsets) - 1

    @property
    def ntotal(self) -> int:
        return int(self.ids.shape[0])

    @property
    def memory_bytes(self) -> int:
        return int(self.words.nbytes + self.ids.nbytes + self.offsets.nbytes)

    def search(
        self, codes: np.ndarray, k: int, nprobe: int = 1, threads: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``(distance, id)`` top-``k`` of ``codes uint8[nq, n_bits/8]`` over the
        ``nprobe`` nearest lists (all codes when there is no quantizer); see ``run_blocks``."""
        nq = codes.shape[0]
        out_d = np.empty((nq, k), dtype=np.int32)
        out_i = np.empty((nq, k), dtype=np.int64)
        queries = to_words(codes)
        k64 = np.int64(k)
        nprobe = max(1, min(int(nprobe), self.nlist))

        def block(lo: int, hi: int) -> None:
            if self.quantizer is None and self.nlist == 1 and hi - lo > 1:
                _scan_all_tiled(
                    self.words, self.ids, queries[lo:hi], k64, out_d[lo:hi], out_i[lo:hi]
                )
                return
            if self.quantizer is None:
                probes = np.zeros((hi - lo, 1), dtype=np.int64)
            else:
                _, probes = self.quantizer.search(codes[lo:hi], nprobe)
            _scan_serial(
                self.words, self.ids, self.offsets, queries[lo:hi], probes, k64,
                out_d[lo:hi], out_i[lo:hi],
            )  # fmt: skip

        run_blocks(nq, threads, block)
        return out_d, out_i


def scan_lists(
    words: np.ndarray,
    ids: np.ndarray,
    offsets: np.ndarray,
    queries: np.ndarray,
    probes: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The kernel on its own (one thread): exact ``(distance, id)`` top-``k`` of ``queries
    uint64[nq, w]`` over the lists ``probes int64[nq, nprobe]`` names (``-1`` entries skipped)."""
    nq = queries.shape[0]
    out_d = np.empty((nq, k), dtype=np.int32)
    out_i = np.empty((nq, k), dtype=np.int64)
    _scan_serial(words, ids, offsets, queries, probes, np.int64(k), out_d, out_i)
    return out_d, out_i
