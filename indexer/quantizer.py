"""The coarse quantizer every shard of an index shares: binary k-means trained once on a sample.

``quantizer="flat"`` assigns codes with an exact ``IndexBinaryFlat`` over the centroids;
``quantizer="hnsw"`` uses an ``IndexBinaryHNSW`` graph over them (for large ``nlist``, where the
exact assignment scan dominates add and search time).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np

from odh_core.packing import check_n_bits

if TYPE_CHECKING:
    import faiss

logger = logging.getLogger(__name__)

QUANTIZERS = ("flat", "hnsw")


def list_quantizers() -> list[str]:
    """The coarse quantizers an index build can use (``BuildConfig.quantizer``)."""
    return list(QUANTIZERS)


def default_nlist(n: int) -> int:
    """About ``4 * sqrt(n)`` lists, clipped to ``[1, n / 39]`` (>= 39 training points per list)."""
    return int(min(max(1, round(4 * math.sqrt(max(n, 0)))), max(1, n // 39)))


def sample_rows(n: int, train_size: int, seed: int) -> np.ndarray:
    """Sorted indices of the seeded training sample (all rows when ``n <= train_size``)."""
    if n <= train_size:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, train_size, replace=False))


def empty_ivf(n_bits: int, nlist: int, quantizer: str = "flat", hnsw_m: int = 16) -> faiss.Index:
    """An untrained ``IndexBinaryIVF`` with a flat or HNSW coarse quantizer."""
    import faiss

    if quantizer not in QUANTIZERS:
        raise ValueError(f"quantizer must be one of {QUANTIZERS}, got {quantizer!r}")
    n_bits = check_n_bits(n_bits, "n_bits")
    if quantizer == "hnsw":
        if hnsw_m < 2:
            raise ValueError(f"hnsw_m must be >= 2, got {hnsw_m}")
        coarse = faiss.IndexBinaryHNSW(n_bits, hnsw_m)
    else:
        coarse = faiss.IndexBinaryFlat(n_bits)
    ivf = faiss.IndexBinaryIVF(coarse, n_bits, nlist)
    ivf.own_fields = True
    coarse.this.disown()  # the IVF owns (and frees) its quantizer now
    return ivf


def train_ivf(
    codes: np.ndarray,
    n_bits: int,
    nlist: int,
    *,
    train_size: int,
    seed: int,
    niter: int = 20,
    quantizer: str = "flat",
    hnsw_m: int = 16,
) -> faiss.Index:
    """Train an empty ``IndexBinaryIVF`` on a seeded sample of ``codes``."""
    n = codes.shape[0]
    if n < nlist:
        raise ValueError(f"nlist={nlist} exceeds the number of codes ({n})")
    sample = np.ascontiguousarray(codes[sample_rows(n, train_size, seed)])
    ivf = empty_ivf(n_bits, nlist, quantizer, hnsw_m)
    ivf.cp.seed = seed
    ivf.cp.niter = niter
    ivf.cp.max_points_per_centroid = max(256, math.ceil(len(sample) / nlist))
    ivf.train(sample)
    return ivf


def train_quantizer(
    codes: np.ndarray,
    n_bits: int,
    nlist: int,
    *,
    train_size: int,
    seed: int,
    niter: int = 20,
    quantizer: str = "flat",
    hnsw_m: int = 16,
) -> bytes:
    """Train an empty ``IndexBinaryIVF`` on a seeded sample; returns its serialised bytes."""
    import faiss

    ivf = train_ivf(
        codes, n_bits, nlist, train_size=train_size, seed=seed, niter=niter,
        quantizer=quantizer, hnsw_m=hnsw_m,
    )  # fmt: skip
    return faiss.serialize_index_binary(ivf).tobytes()


def index_from_bytes(data: bytes | np.ndarray) -> faiss.IndexBinaryIVF:
    """Deserialise an ``IndexBinaryIVF`` (e.g. the trained quantizer)."""
    import faiss

    arr = data if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
    return faiss.deserialize_index_binary(arr)
