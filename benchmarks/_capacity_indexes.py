"""The indexes the capacity benchmark builds: plain FAISS and usearch references, and odh's own.

Each builder returns a :class:`Built`: a search function ``(queries, k, params, threads) ->
distances``, the parameter sweep of its index type, and its build cost (seconds, RSS growth and
serialised size). The references are one plain index of each type over the same codes: FAISS
``IndexBinaryFlat``, ``IndexBinaryIVF`` (trained like ``odh build``: ``indexer.quantizer``'s
seeded sample and k-means) and ``IndexBinaryHNSW``; usearch ``b1`` HNSW. The ``odh`` rows use the
project's index-type adapters (``indexer.index_types``) when that package is present.
"""

from __future__ import annotations

import gc
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

INDEX_TYPES: tuple[str, ...] = ("flat", "ivf", "hnsw")
NPROBES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
EF_SEARCHES: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
EF_CONSTRUCTION = 40  # FAISS IndexBinaryHNSW's default; usearch's expansion_add is set to match
IVF_TRAIN_SIZE = 100_000  # odh build's default quantizer sample
IVF_NITER = 20

SearchFn = Callable[[np.ndarray, int, dict[str, int], int], np.ndarray]


@dataclass
class Built:
    """One built index: how to search it, what to sweep, and what it cost."""

    source: str
    index_type: str
    build_params: dict[str, int]
    search: SearchFn
    sweep: list[dict[str, int]]
    build_s: float
    ram_bytes: int
    disk_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)


def _rss() -> int:
    import psutil

    gc.collect()
    return int(psutil.Process().memory_info().rss)


def _disk_bytes(save: Callable[[str], None]) -> int:
    with tempfile.TemporaryDirectory(prefix="odh-capacity-") as tmp:
        path = os.path.join(tmp, "index")
        save(path)
        if os.path.isdir(path):
            return sum(
                os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs
            )
        return os.path.getsize(path)


@dataclass(frozen=True)
class TrainedIvf:
    """An empty trained ``IndexBinaryIVF`` (serialised) and the seconds its training took.

    The references and odh's ``ivf`` both train with ``indexer.quantizer.train_ivf`` on the same
    seeded sample, so the benchmark trains once and counts the training in both ``build_s``."""

    data: bytes
    train_s: float

    def index(self) -> Any:
        import faiss

        return faiss.deserialize_index_binary(np.frombuffer(self.data, dtype=np.uint8))


def train_shared_ivf(codes: np.ndarray, nlist: int, seed: int, threads: int) -> TrainedIvf:
    """Train the IVF quantizer once for every source of one block."""
    import faiss

    from indexer.quantizer import train_ivf

    _faiss_threads(threads)
    t0 = time.perf_counter()
    ivf = train_ivf(
        codes, codes.shape[1] * 8, nlist, train_size=IVF_TRAIN_SIZE, seed=seed, niter=IVF_NITER
    )
    train_s = time.perf_counter() - t0
    return TrainedIvf(faiss.serialize_index_binary(ivf).tobytes(), train_s)


def _faiss_threads(threads: int) -> None:
    import faiss

    faiss.omp_set_num_threads(threads)


def _faiss_search(index: Any, param: str | None) -> SearchFn:
    import faiss

    def search(q: np.ndarray, k: int, params: dict[str, int], threads: int) -> np.ndarray:
        faiss.omp_set_num_threads(threads)
        if param == "nprobe":
            index.nprobe = params["nprobe"]
        elif param == "ef_search":
            index.hnsw.efSearch = params["ef_search"]
        return index.search(q, k)[0]

    return search


def build_faiss(
    index_type: str,
    codes: np.ndarray,
    params: dict[str, int],
    threads: int,
    trained: TrainedIvf | None = None,
) -> Built:
    """One plain FAISS index of ``index_type`` over ``codes`` (built on ``threads`` threads;
    ``ivf`` starts from the ``trained`` quantizer, whose training seconds count in ``build_s``)."""
    import faiss

    n_bits = codes.shape[1] * 8
    _faiss_threads(threads)
    rss0 = _rss()
    t0 = time.perf_counter()
    if index_type == "flat":
        index: Any = faiss.IndexBinaryFlat(n_bits)
        sweep: list[dict[str, int]] = [{}]
        param = None
    elif index_type == "ivf":
        if trained is None:
            raise ValueError("build_faiss: index type 'ivf' needs the trained quantizer")
        index = trained.index()
        t0 -= trained.train_s
        sweep = [{"nprobe": p} for p in NPROBES if p <= params["nlist"]]
        param = "nprobe"
    elif index_type == "hnsw":
        index = faiss.IndexBinaryHNSW(n_bits, params["m"])
        index.hnsw.efConstruction = EF_CONSTRUCTION
        sweep = [{"ef_search": e} for e in EF_SEARCHES]
        param = "ef_search"
    else:
        raise ValueError(f"index_type must be one of {list(INDEX_TYPES)}, got {index_type!r}")
    index.add(codes)
    build_s = time.perf_counter() - t0
    ram = _rss() - rss0
    disk = _disk_bytes(lambda p: faiss.write_index_binary(index, p))
    return Built("faiss", index_type, dict(params), _faiss_search(index, param), sweep, build_s,
                 ram, disk)  # fmt: skip


def build_usearch(codes: np.ndarray, params: dict[str, int], threads: int) -> Built:
    """usearch ``b1`` HNSW (Hamming) over ``codes``, connectivity ``params["m"]``."""
    from usearch.index import Index

    n_bits = codes.shape[1] * 8
    rss0 = _rss()
    t0 = time.perf_counter()
    index = Index(
        ndim=n_bits, metric="hamming", dtype="b1", connectivity=params["m"],
        expansion_add=EF_CONSTRUCTION,
    )  # fmt: skip
    index.add(np.arange(len(codes), dtype=np.uint64), codes, threads=threads)
    build_s = time.perf_counter() - t0
    ram = _rss() - rss0

    def search(q: np.ndarray, k: int, p: dict[str, int], n_threads: int) -> np.ndarray:
        index.expansion_search = p["ef_search"]
        found = index.search(q, k, threads=n_threads)
        dist = np.asarray(found.distances, dtype=np.float64).reshape(len(q), -1)
        # one query gives ``Matches`` (its hits only), a batch ``BatchMatches`` padded to k
        counts = np.asarray(getattr(found, "counts", [dist.shape[1]])).reshape(len(q))
        dist[np.arange(dist.shape[1])[None, :] >= counts[:, None]] = np.inf
        return dist

    disk = _disk_bytes(index.save)
    sweep = [{"ef_search": e} for e in EF_SEARCHES]
    return Built("usearch", "hnsw", dict(params), search, sweep, build_s, ram, disk)


def odh_available() -> bool:
    """Whether the project's index-type adapters (``indexer.index_types``) are importable."""
    try:
        import indexer.index_types  # noqa: F401
    except ImportError:
        return False
    return True


def _odh_params(index_type: str, params: dict[str, int], seed: int) -> dict[str, int]:
    """The bench's build settings in the adapter's names (IVF trained like the references)."""
    if index_type == "ivf":
        return {"nlist": params["nlist"], "seed": seed, "train_size": IVF_TRAIN_SIZE,
                "niter": IVF_NITER}  # fmt: skip
    if index_type == "hnsw":
        return {"M": params["m"], "ef_construction": EF_CONSTRUCTION}
    return {}


def _warm_odh(index_type: str, codes: np.ndarray, threads: int) -> None:
    """Build and search a small index of the type first, so that compiling the search kernels
    (numba) is neither in ``build_s`` nor in the RSS growth of the real build."""
    from indexer.index_types import create_index_type

    small = np.ascontiguousarray(codes[:2000])
    params = {"nlist": 4, "train_size": len(small)} if index_type == "ivf" else {}
    adapter = create_index_type(index_type, small.shape[1] * 8, **params)
    if not adapter.is_trained:
        adapter.train(small)
    adapter.add(small, np.arange(len(small), dtype=np.int64))
    adapter.search(small[:4], 10, threads=threads)


def build_odh(
    index_type: str,
    codes: np.ndarray,
    params: dict[str, int],
    seed: int,
    threads: int,
    trained: TrainedIvf | None = None,
) -> Built:
    """The project's own adapter of ``index_type`` (``indexer.index_types``) over ``codes``: one
    index per searcher replica, searched through the adapter's own (tie-exact) path. ``ivf``
    starts from the ``trained`` quantizer (its training seconds count in ``build_s``)."""
    from indexer.index_types import create_index_type, get_index_type, make_params

    n_bits = codes.shape[1] * 8
    _faiss_threads(threads)
    _warm_odh(index_type, codes, threads)
    rss0 = _rss()
    t0 = time.perf_counter()
    odh_params = _odh_params(index_type, params, seed)
    if index_type == "ivf" and trained is not None:
        cls = get_index_type("ivf")
        adapter = cls.from_faiss(trained.index(), make_params("ivf", odh_params))
        t0 -= trained.train_s
    else:
        adapter = create_index_type(index_type, n_bits, **odh_params)
    if not adapter.is_trained:
        adapter.train(codes)
    adapter.add(codes, np.arange(len(codes), dtype=np.int64))
    build_s = time.perf_counter() - t0
    # one search before the RSS reading: a search-side layout built on first use (the IVF's
    # contiguous list copy) is memory the replica holds; its one-off cost is not in build_s
    adapter.search(codes[:1], 10, threads=threads)
    ram = _rss() - rss0

    def search(q: np.ndarray, k: int, p: dict[str, int], n_threads: int) -> np.ndarray:
        # the adapter runs its own scan threads (FAISS at one thread in each)
        return np.asarray(adapter.search(q, k, threads=n_threads, **p)[0])

    disk = _disk_bytes(lambda path: adapter.save(path))
    if index_type == "ivf":
        sweep = [{"nprobe": p} for p in NPROBES if p <= params["nlist"]]
    elif index_type == "hnsw":
        sweep = [{"ef_search": e} for e in EF_SEARCHES]
    else:
        sweep = [{}]
    extra = {"memory_bytes": int(adapter.memory_bytes)}
    return Built("odh", index_type, dict(params), search, sweep, build_s, ram, disk, extra)


def build_params(index_type: str, n: int, hnsw_m: tuple[int, ...]) -> list[dict[str, int]]:
    """The build settings swept for one index type at ``n`` codes."""
    from indexer.quantizer import default_nlist

    if index_type == "flat":
        return [{}]
    if index_type == "ivf":
        return [{"nlist": default_nlist(n)}]
    if index_type == "hnsw":
        return [{"m": m} for m in hnsw_m]
    raise ValueError(f"index_type must be one of {list(INDEX_TYPES)}, got {index_type!r}")
