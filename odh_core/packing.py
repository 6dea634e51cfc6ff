"""Bit packing of hash codes and Hamming distances on packed codes.

Layout: ``np.packbits(bits, axis=1, bitorder="little")`` → ``uint8[n, n_bits / 8]``, the layout
FAISS binary indexes use. A bit is 1 exactly when the real value is ``>= 0`` (``sign(0) := +1``).
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

_BLOCK_BYTES = 1 << 24  # bound on the temporary XOR block (bytes)


def check_n_bits(n_bits: object, name: str = "n_bits") -> int:
    """The one validator of a code length: a positive ``int`` multiple of 8 (FAISS binary ``d``).

    ``name`` says where the value came from (``"TrainConfig.n_bits"``, ``"manifest n_bits"``...),
    so that the error names the field. Returns the value as ``int``.
    """
    if isinstance(n_bits, bool) or not isinstance(n_bits, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(n_bits).__name__} {n_bits!r}")
    if n_bits <= 0 or n_bits % 8:
        raise ValueError(f"{name} must be a positive multiple of 8, got {n_bits}")
    return int(n_bits)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack ``[n, K]`` bits to ``uint8[n, K/8]``.

    bool: True → 1; integers (0/1 or ±1): ``> 0`` → 1; floats (±1 or real outputs): ``>= 0`` → 1.
    """
    arr = np.asarray(bits)
    if arr.ndim != 2:
        raise ValueError(f"bits must be 2-D [n, n_bits], got shape {arr.shape}")
    check_n_bits(arr.shape[1], "bits: n_bits (columns)")
    if arr.dtype == np.bool_:
        on = arr
    elif arr.dtype.kind in "ui":
        # 0/1 integer bits; for signed ±1 integers -1 maps to 0 as well
        on = arr > 0
    elif arr.dtype.kind == "f":
        if np.isnan(arr).any():
            raise ValueError("bits contains NaN")
        on = arr >= 0
    else:
        raise TypeError(f"bits: unsupported dtype {arr.dtype}")
    return np.packbits(on, axis=1, bitorder="little")


def unpack_bits(codes: np.ndarray, n_bits: int) -> np.ndarray:
    """Unpack ``uint8[n, n_bits/8]`` codes to ``uint8[n, n_bits]`` of 0/1."""
    arr = _check_codes(codes, "codes")
    n_bits = check_n_bits(n_bits, "n_bits")
    if arr.shape[1] * 8 != n_bits:
        raise ValueError(f"n_bits={n_bits} does not match codes of {arr.shape[1]} bytes")
    return np.unpackbits(arr, axis=1, count=n_bits, bitorder="little")


def _check_codes(codes: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(codes)
    if arr.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8, got {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n, n_bits/8], got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _as_words(codes: np.ndarray) -> np.ndarray:
    """View ``[n, B]`` uint8 codes as uint64 words when B % 8 == 0 (faster popcount)."""
    if codes.shape[1] % 8 == 0:
        return codes.view(np.uint64)
    return codes


def hamming_distances(a_codes: np.ndarray, b_codes: np.ndarray) -> np.ndarray:
    """All pairwise Hamming distances ``int32[na, nb]`` between two sets of packed codes."""
    a = _check_codes(a_codes, "a_codes")
    b = _check_codes(b_codes, "b_codes")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"code widths differ: {a.shape[1]} vs {b.shape[1]} bytes")
    na, nb = a.shape[0], b.shape[0]
    out = np.empty((na, nb), dtype=np.int32)
    if na == 0 or nb == 0:
        return out
    aw, bw = _as_words(a), _as_words(b)
    words = aw.shape[1]
    rows = max(1, _BLOCK_BYTES // max(1, nb * words * aw.itemsize))
    for start in range(0, na, rows):
        stop = min(na, start + rows)
        x = np.bitwise_xor(aw[start:stop, None, :], bw[None, :, :])
        out[start:stop] = np.bitwise_count(x).sum(axis=2, dtype=np.int32)
    return out
