"""The geometry of training codes that ODH's two findings are about (numpy only).

Codes are ``bool[n, K]`` sign bits (bit set ⇔ u ≥ 0, as everywhere in the project), labels
``int[n]`` class ids, centres ``bool[C, K]`` (bit set ⇔ centre +1). All distances are Hamming
distances in bits.

* code-to-centre distance: ``d_i = H(b_i, c_{y_i})``, its mean and the fraction within radius r;
* intra-class spread: mean pairwise distance of the codes of one class, averaged over classes;
* inter-class separation: mean pairwise distance of codes of different classes, and of the class
  mean codes (per-bit majority, ties +1), and each class mean code's nearest other one;
* centre movement between epochs: bits flipped and the cosine of the real centre outputs.

Pairwise means are computed from per-bit counts (exact, no ``n × n`` matrix): for a set of codes
with ``o_j`` ones in bit j out of n, the sum of the pairwise distances is ``Σ_j o_j (n − o_j)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "centre_movement",
    "centre_stats",
    "class_mean_codes",
    "code_centre_distances",
    "code_metrics",
    "inter_class_separation",
    "intra_class_spread",
    "plateau_epoch",
    "radii_for",
    "within_radius",
]


def _check_codes(bits: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(bits)
    if arr.ndim != 2 or arr.dtype != np.bool_:
        raise TypeError(f"{name} must be bool[n, K] sign bits, got {arr.dtype}{arr.shape}")
    return arr


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``int[len(a), len(b)]`` Hamming distances between two small sets of bool codes."""
    a8, b8 = a.astype(np.int64), b.astype(np.int64)
    return (a8 @ (1 - b8).T + (1 - a8) @ b8.T).astype(np.int64)


def radii_for(n_bits: int) -> list[int]:
    """The radii reported: 0, 1, 2, K/8 and K/4 (deduplicated, ascending)."""
    return sorted({0, 1, 2, n_bits // 8, n_bits // 4})


def code_centre_distances(bits: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """``int[n]``: the Hamming distance of each code to its own class centre."""
    bits, centres = _check_codes(bits, "bits"), _check_codes(centres, "centres")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(bits),):
        raise ValueError(f"labels must be int[{len(bits)}], got shape {labels.shape}")
    if bits.shape[1] != centres.shape[1]:
        raise ValueError(f"codes have {bits.shape[1]} bits, centres {centres.shape[1]}")
    return (bits != centres[labels]).sum(axis=1).astype(np.int64)


def within_radius(distances: np.ndarray, radii: Sequence[int]) -> dict[str, float]:
    """``{"r<=R": share of distances ≤ R}`` for each radius."""
    d = np.asarray(distances)
    return {f"r<={r}": float((d <= r).mean()) if len(d) else 0.0 for r in radii}


def _pair_sum(ones: np.ndarray, n: int) -> float:
    """Sum of pairwise Hamming distances of n codes whose bit j has ``ones[j]`` ones."""
    return float((ones * (n - ones)).sum())


def intra_class_spread(bits: np.ndarray, labels: np.ndarray) -> float:
    """Mean pairwise Hamming distance within a class, averaged over the classes that have at
    least two codes."""
    bits = _check_codes(bits, "bits")
    labels = np.asarray(labels)
    spreads = []
    for c in np.unique(labels):
        members = bits[labels == c]
        n = len(members)
        if n >= 2:
            spreads.append(_pair_sum(members.sum(axis=0), n) / (n * (n - 1) / 2))
    return float(np.mean(spreads)) if spreads else 0.0


def class_mean_codes(bits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class ids present, ``bool[C', K]`` per-bit majority code of each; a tie gives +1)."""
    bits = _check_codes(bits, "bits")
    labels = np.asarray(labels)
    classes = np.unique(labels)
    means = np.stack([2 * bits[labels == c].sum(axis=0) >= (labels == c).sum() for c in classes])
    return classes, means


def inter_class_separation(bits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``between_codes``: mean Hamming distance of two codes of different classes (over all
    such pairs); ``class_means``: mean distance between the class mean codes (over class pairs);
    ``class_means_nearest``: per class, the distance of its mean code to the nearest other one,
    averaged over classes."""
    bits = _check_codes(bits, "bits")
    labels = np.asarray(labels)
    classes, means = class_mean_codes(bits, labels)
    if len(classes) < 2:
        return {"between_codes": 0.0, "class_means": 0.0, "class_means_nearest": 0.0}
    counts = np.array([(labels == c).sum() for c in classes], dtype=np.float64)
    ones = np.stack([bits[labels == c].sum(axis=0) for c in classes]).astype(np.float64)
    total_ones, n = ones.sum(axis=0), counts.sum()
    all_pairs = _pair_sum(total_ones, int(n))
    within = sum(_pair_sum(o, int(m)) for o, m in zip(ones, counts, strict=True))
    n_between = (n * n - (counts**2).sum()) / 2
    d = _hamming(means, means).astype(np.float64)
    iu = np.triu_indices(len(classes), 1)
    np.fill_diagonal(d, np.inf)
    return {
        "between_codes": float((all_pairs - within) / n_between),
        "class_means": float(d[iu].mean()),
        "class_means_nearest": float(d.min(axis=1).mean()),
    }


def centre_stats(centres: np.ndarray) -> dict[str, float]:
    """Minimum and mean pairwise Hamming distance of the centres."""
    centres = _check_codes(centres, "centres")
    if len(centres) < 2:
        return {"min": float(centres.shape[1]), "mean": float(centres.shape[1])}
    d = _hamming(centres, centres)[np.triu_indices(len(centres), 1)]
    return {"min": float(d.min()), "mean": float(d.mean())}


def centre_movement(
    prev_bits: np.ndarray, bits: np.ndarray, prev_real: np.ndarray, real: np.ndarray
) -> dict[str, float]:
    """How the centres moved since the previous observation: ``bits_flipped_mean`` (per
    centre) and ``bits_flipped_max``, ``cosine_mean`` / ``cosine_min`` of each centre's real
    output (the sign's argument) with its previous value."""
    prev_bits, bits = _check_codes(prev_bits, "prev_bits"), _check_codes(bits, "bits")
    if prev_bits.shape != bits.shape or np.shape(prev_real) != np.shape(real):
        raise ValueError("centres changed shape between epochs")
    flips = (prev_bits != bits).sum(axis=1)
    a = np.asarray(prev_real, dtype=np.float64)
    b = np.asarray(real, dtype=np.float64)
    cos = (a * b).sum(axis=1) / np.maximum(
        np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12
    )
    return {
        "bits_flipped_mean": float(flips.mean()),
        "bits_flipped_max": float(flips.max()),
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
    }


def code_metrics(
    bits: np.ndarray, labels: np.ndarray, centres: np.ndarray | None
) -> dict[str, Any]:
    """Every per-epoch code statistic of one observation (centre terms when ``centres``)."""
    bits = _check_codes(bits, "bits")
    labels = np.asarray(labels, dtype=np.int64)
    n_bits = bits.shape[1]
    spread = intra_class_spread(bits, labels)
    sep = inter_class_separation(bits, labels)
    out: dict[str, Any] = {
        "intra_class_spread": spread,
        "inter_class": sep,
        "inter_intra_ratio": sep["between_codes"] / spread if spread > 0 else float("inf"),
        "bit_balance_mean_abs": float(np.abs(2 * bits.mean(axis=0) - 1).mean()),
    }
    if centres is not None:
        d = code_centre_distances(bits, labels, centres)
        nearest = _hamming(bits, _check_codes(centres, "centres")).argmin(axis=1)
        out["centre_distance_mean"] = float(d.mean())
        out["centre_distance_median"] = float(np.median(d))
        out["within_radius"] = within_radius(d, radii_for(n_bits))
        out["nearest_centre_is_own"] = float((nearest == labels).mean())
        out["centres"] = centre_stats(centres)
    return out


def plateau_epoch(values: Sequence[float], tol: float, *, decreasing: bool = True) -> int | None:
    """The transition epoch of a per-epoch curve (``values[e − 1]`` after epoch e, 1-based):
    the first epoch e after which the curve never improves on ``v_e`` by more than ``tol``
    (relative): every later value stays above ``v_e·(1 − tol)`` for a falling curve (below
    ``v_e + tol·|v_e|`` for a rising one). None when no epoch before the last qualifies (the
    curve still improves by more than ``tol`` at the end of the run)."""
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    v = [float(x) for x in values]
    for e in range(1, len(v)):
        margin = tol * max(abs(v[e - 1]), 1e-12)
        later = v[e:]
        gain = (v[e - 1] - min(later)) if decreasing else (max(later) - v[e - 1])
        if gain <= margin:
            return e
    return None
