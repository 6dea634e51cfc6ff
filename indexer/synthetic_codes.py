"""Seeded synthetic packed codes for tests and benchmarks: uniform and clustered around centres.

Clustered codes imitate a trained encoder's output: codes of one class lie near one hash centre.
Each code copies a random centre (of ``n_centres`` uniform random ``n_bits``-bit centres) and
flips each bit independently with probability ``flip``. Generated in chunks, so ten million codes
need no more temporary memory than the output.
"""

from __future__ import annotations

import logging

import numpy as np

from odh_core.packing import check_n_bits

logger = logging.getLogger(__name__)

_CHUNK = 250_000


def uniform_codes(n: int, n_bits: int, seed: int) -> np.ndarray:
    """``uint8[n, n_bits/8]`` codes with every bit uniform and independent."""
    n_bits = check_n_bits(n_bits, "n_bits")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return np.random.default_rng(seed).integers(0, 256, size=(n, n_bits // 8), dtype=np.uint8)


def clustered_codes(n: int, n_bits: int, n_centres: int, flip: float, seed: int) -> np.ndarray:
    """``uint8[n, n_bits/8]`` codes around ``n_centres`` random centres, each bit flipped with
    probability ``flip``.

    The seed fixes the centres first, so calls with one seed share centres (and with the same
    ``n`` give the same codes); database and query codes are best drawn in one call and sliced
    (``codes[:n_db]``, ``codes[n_db:]``).
    """
    n_bits = check_n_bits(n_bits, "n_bits")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n_centres < 1:
        raise ValueError(f"n_centres must be >= 1, got {n_centres}")
    if not 0.0 <= flip <= 1.0:
        raise ValueError(f"flip must be in [0, 1], got {flip}")
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, size=(n_centres, n_bits), dtype=np.uint8)
    out = np.empty((n, n_bits // 8), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        m = min(_CHUNK, n - start)
        bits = centres[rng.integers(0, n_centres, size=m)]
        bits ^= rng.random((m, n_bits), dtype=np.float32) < flip
        out[start : start + m] = np.packbits(bits, axis=1, bitorder="little")
    return out
