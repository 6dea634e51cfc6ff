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

from odh_core.packed.kernels import popcount64

logger = logging.getLogger(__name__)

#: Distance of an empty result slot (what FAISS binary indexes use as well).
MISSING_DISTANCE: int = int(np.iinfo(np.int32).max)
_ID_SENTINEL = np.iinfo(np.int64).max


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
def _hamming(words: np.ndarray, r: int, q: np.ndarray, n_words: int) -> int:
    d = 0
    for w in range(n_words):
        d += popcount64(words[r, w] ^ q[w])
    return d


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
def _offer(hd, hi, k, d, i, worst_d, worst_i):  # type: ignore[no-untyped-def]
    """Insert ``(d, i)`` if it beats the heap's worst; returns the new worst."""
    if d < worst_d or (d == worst_d and i < worst_i):
        _sift_down(hd, hi, k, d, i)
        return hd[0], hi[0]
    return worst_d, worst_i


@njit(inline="always")
def _scan_one(words, ids, offsets, q, probes, k, hd, hi):  # type: ignore[no-untyped-def]
    n_words = words.shape[1]
    for j in range(k):
        hd[j] = 2147483647
        hi[j] = 9223372036854775807
    worst_d = np.int64(2147483647)
    worst_i = np.int64(9223372036854775807)
    q0 = q[0]
    q1 = q[1] if n_words > 1 else np.uint64(0)
    for p in range(probes.shape[0]):
        lst = probes[p]
        if lst < 0:
            continue
        start = offsets[lst]
        stop = offsets[lst + 1]
        if n_words == 1:
            for r in range(start, stop):
                d = popcount64(words[r, 0] ^ q0)
                if d <= worst_d:
                    worst_d, worst_i = _offer(hd, hi, k, d, ids[r], worst_d, worst_i)
        elif n_words == 2:
            for r in range(start, stop):
                d = popcount64(words[r, 0] ^ q0) + popcount64(words[r, 1] ^ q1)
                if d <= worst_d:
                    worst_d, worst_i = _offer(hd, hi, k, d, ids[r], worst_d, worst_i)
        else:
            for r in range(start, stop):
                d = _hamming(words, r, q, n_words)
                if d <= worst_d:
                    worst_d, worst_i = _offer(hd, hi, k, d, ids[r], worst_d, worst_i)
    _heap_sort(hd, hi, k)
    for j in range(k):
        if hi[j] == 9223372036854775807:
            hi[j] = -1


@njit(cache=True, nogil=True)
def _scan_serial(words, ids, offsets, queries, probes, k, out_d, out_i):  # type: ignore[no-untyped-def]
    for qi in range(queries.shape[0]):
        _scan_one(words, ids, offsets, queries[qi], probes[qi], k, out_d[qi], out_i[qi])


def _set_faiss_threads_1() -> None:
    import faiss

    faiss.omp_set_num_threads(1)


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()
_INLINE = threading.local()


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
    thread: pool threads are set so, and so is a calling thread the first time it scans inline.
    """
    blocks = max(1, min(int(threads), nq // 16))
    if blocks <= 1:
        if not getattr(_INLINE, "faiss_threads_set", False):
            _set_faiss_threads_1()
            _INLINE.faiss_threads_set = True
        fn(0, nq)
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
