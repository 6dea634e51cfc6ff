"""Hash centres: CSQ (Hadamard / balanced random) and ODH semantic self-adaptive centres."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from odh_core.binary import IdentitySTE

logger = logging.getLogger(__name__)


def hadamard(n: int) -> np.ndarray:
    """Sylvester Hadamard matrix ``H_n`` (n a power of two), entries ±1 as int8."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"Hadamard order must be a power of two, got {n}")
    h = np.ones((1, 1), dtype=np.int8)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def _pairwise_hamming(c: np.ndarray) -> np.ndarray:
    k = c.shape[1]
    return ((k - c.astype(np.int64) @ c.T.astype(np.int64)) // 2).astype(np.int64)


def csq_centres(
    n_classes: int,
    n_bits: int,
    *,
    seed: int = 0,
    min_distance: int | None = None,
    max_tries: int = 200,
) -> tuple[np.ndarray, dict[str, Any]]:
    """CSQ centres ``float32[C, K]`` of ±1 plus ``{"min_distance", "mean_distance", "kind"}``.

    Rows of H_K and −H_K when C ≤ 2K and K is a power of two; otherwise balanced random vectors
    (exactly K/2 negatives) redrawn until the minimum pairwise distance reaches ``min_distance``
    (default K/4) or ``max_tries`` is spent (the best draw is kept).
    """
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    if n_bits < 2 or n_bits % 2:
        raise ValueError(f"n_bits must be even, got {n_bits}")
    is_pow2 = n_bits & (n_bits - 1) == 0
    if is_pow2 and n_classes <= 2 * n_bits:
        h = hadamard(n_bits)
        c = np.concatenate([h, -h])[:n_classes].astype(np.float32)
        kind = "hadamard"
    else:
        rng = np.random.default_rng(seed)
        target = n_bits // 4 if min_distance is None else min_distance
        best, best_min = None, -1
        for _ in range(max_tries):
            cand = np.ones((n_classes, n_bits), dtype=np.float32)
            for row in cand:
                row[rng.permutation(n_bits)[: n_bits // 2]] = -1
            d = _pairwise_hamming(cand)
            dmin = int(d[np.triu_indices(n_classes, 1)].min()) if n_classes > 1 else n_bits
            if dmin > best_min:
                best, best_min = cand, dmin
            if dmin >= target:
                break
        assert best is not None
        c, kind = best, "balanced_random"
    d = _pairwise_hamming(c)
    iu = np.triu_indices(n_classes, 1)
    info = {
        "kind": kind,
        "min_distance": int(d[iu].min()) if n_classes > 1 else n_bits,
        "mean_distance": float(d[iu].mean()) if n_classes > 1 else float(n_bits),
    }
    logger.info("CSQ centres: %s", info)
    return c, info


def multilabel_centres(
    centres: torch.Tensor, targets: torch.Tensor, *, seed: int = 0
) -> torch.Tensor:
    """Per-sample centre: sign of the sum of its label centres; zeros from one fixed ±1 vector."""
    summed = targets.float() @ centres.float()
    gen = torch.Generator().manual_seed(seed)
    fill = torch.where(torch.rand(centres.shape[1], generator=gen) < 0.5, -1.0, 1.0)
    return torch.where(summed == 0, fill.to(summed.device), torch.sign(summed))


class SemanticCentres(nn.Module):
    """ODH semantic self-adaptive centres: MLP D → D → ReLU → K on class rows of W.

    ``c = sign(sigmoid(z) − 0.5)`` with an identity straight-through estimator, so gradients reach
    the MLP and W. Recomputed every step.
    """

    def __init__(self, feature_dim: int, n_bits: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(feature_dim, feature_dim), nn.ReLU(), nn.Linear(feature_dim, n_bits)
        )

    def forward(self, class_weights: torch.Tensor) -> torch.Tensor:
        z = self.mlp(class_weights)
        return IdentitySTE.apply(torch.sigmoid(z) - 0.5)
