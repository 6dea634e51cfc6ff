"""SHC semantic hash centres (ALGORITHMS.md §3): centres generated from a trained classifier's
class similarity under a minimum Hamming distance, then the CSQ loss on them.

Steps: (1) class similarity S — for each training image the softmax over the *other* classes,
accumulated per true class, symmetrised, each row's off-diagonal rescaled to [−1, 1], diagonal 1;
(2) the minimum distance d = the smallest integer with Σ_{i<d} C(K, i) ≥ 2^K / C, starting from the
CSQ centres refined by a local bit-flip search until their minimum distance reaches d;
(3) ``n_iters`` rounds of: fit a continuous M (K × C) so that S ≈ (1/K)·MᵀH in closed form
(least squares), then give each centre a sign-gradient step (flip its bit with the largest
gradient pointing against it) accepted only if the similarity fit improves and the global minimum
distance stays ≥ d. The achieved minimum distance and the fit are recorded in ``info``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from odh_core.centres import csq_centres
from odh_core.methods.base import MethodSetup
from odh_core.methods.csq import CentreLossMethod
from odh_core.methods.registry import register_method
from odh_core.options import option

logger = logging.getLogger(__name__)


def min_distance_bound(n_bits: int, n_classes: int) -> int:
    """Smallest integer d with Σ_{i<d} C(K, i) ≥ 2^K / C."""
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    target, total = 2**n_bits / n_classes, 0
    for d in range(1, n_bits + 2):
        total += math.comb(n_bits, d - 1)
        if total >= target:
            return d
    return n_bits


def class_similarity(probs: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """S from classifier softmax rows ``probs`` ``[n, C]`` and true class ids ``labels``."""
    acc = np.zeros((n_classes, n_classes))
    for c in range(n_classes):
        rows = probs[labels == c].astype(np.float64)
        if len(rows) == 0:
            continue
        rows[:, c] = 0.0  # softmax over the other classes
        rows = rows / rows.sum(axis=1, keepdims=True).clip(1e-12)
        acc[c] = rows.sum(axis=0)
    acc = (acc + acc.T) / 2
    s = np.eye(n_classes)
    for c in range(n_classes):
        others = np.delete(np.arange(n_classes), c)
        if len(others) == 0:
            continue
        v = acc[c, others]
        span = v.max() - v.min()
        s[c, others] = 0.0 if span == 0 else 2 * (v - v.min()) / span - 1
    return s


def _min_dist(h: np.ndarray) -> int:
    """Minimum pairwise Hamming distance of the ±1 columns of ``h`` (K × C)."""
    k, c = h.shape
    if c < 2:
        return k
    d = (k - h.T @ h) / 2
    return int(d[np.triu_indices(c, 1)].min())


def _min_and_count(h: np.ndarray) -> tuple[int, int]:
    k, c = h.shape
    d = ((k - h.T @ h) / 2)[np.triu_indices(c, 1)]
    return int(d.min()), int((d == d.min()).sum())


def refine_min_distance(
    h: np.ndarray, d_min: int, *, seed: int, max_steps: int = 20000
) -> np.ndarray:
    """Local search on ±1 columns of ``h`` (K × C) until the minimum pairwise distance reaches
    ``d_min``: flip a bit of one centre of a closest pair where the two agree, kept when the
    (minimum, −pairs at the minimum) does not get worse."""
    k, c = h.shape
    if c < 2:
        return h
    rng = np.random.default_rng(seed)
    h = h.copy()
    best = _min_and_count(h)
    for _ in range(max_steps):
        if best[0] >= d_min:
            break
        d = (k - h.T @ h) / 2
        d[np.diag_indices(c)] = k + 1
        i, j = np.unravel_index(int(np.argmin(d + rng.random(d.shape) * 0.5)), d.shape)
        agree = np.nonzero(h[:, i] == h[:, j])[0]
        if len(agree) == 0:
            continue
        bit = int(rng.choice(agree))
        h[bit, i] = -h[bit, i]
        cand = _min_and_count(h)
        if (cand[0], -cand[1]) >= (best[0], -best[1]):
            best = cand
        else:
            h[bit, i] = -h[bit, i]
    return h


def similarity_fit(h: np.ndarray, s: np.ndarray) -> float:
    """Mean absolute off-diagonal error of (1/K)·HᵀH against S."""
    k, c = h.shape
    err = np.abs(h.T @ h / k - s)
    return float(err[~np.eye(c, dtype=bool)].mean()) if c > 1 else 0.0


def semantic_centres(
    s: np.ndarray, n_bits: int, *, seed: int, n_iters: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """Centres ``float32[C, K]`` fitted to S under the minimum distance, and their report."""
    n_classes = s.shape[0]
    d_min = min_distance_bound(n_bits, n_classes)
    c0, _ = csq_centres(n_classes, n_bits, seed=seed, min_distance=d_min)
    h = refine_min_distance(c0.T.astype(np.float64), d_min, seed=seed)  # K × C
    start_dist = _min_dist(h)
    fit = similarity_fit(h, s)
    for _ in range(n_iters):
        m_t = n_bits * s @ np.linalg.pinv(h)  # Mᵀ (C × K): least squares of S ≈ MᵀH/K
        grad = -(2 / n_bits) * m_t.T @ (s - m_t @ h / n_bits)  # ∂‖S − MᵀH/K‖²/∂H
        improved = False
        for c in range(n_classes):
            against = np.where(np.sign(-grad[:, c]) != h[:, c], np.abs(grad[:, c]), -1.0)
            bit = int(against.argmax())
            if against[bit] <= 0:
                continue
            cand = h.copy()
            cand[bit, c] = -cand[bit, c]
            if _min_dist(cand) >= min(d_min, start_dist):
                cand_fit = similarity_fit(cand, s)
                if cand_fit < fit:
                    h, fit, improved = cand, cand_fit, True
        if not improved:
            break
    info = {
        "required_min_distance": d_min,
        "min_distance": _min_dist(h),
        "similarity_fit_mean_abs_error": fit,
    }
    return h.T.astype(np.float32), info


@dataclass(frozen=True)
class ShcConfig:
    """SHC's knobs (the loss is CSQ's)."""

    lam: float = option(1e-4, help="CSQ quantisation-loss weight λ")
    n_iters: int = option(50, help="rounds of centre refinement")

    def __post_init__(self) -> None:
        if self.lam < 0:
            raise ValueError(f"ShcConfig.lam must be >= 0, got {self.lam}")
        if self.n_iters < 0:
            raise ValueError(f"ShcConfig.n_iters must be >= 0, got {self.n_iters}")


@register_method("shc")
class ShcMethod(CentreLossMethod):
    """Semantic hash centres from the warm-up classifier, then the CSQ loss."""

    config_class = ShcConfig
    config: ShcConfig  # type: ignore[assignment]

    @property
    def needs_classifier(self) -> bool:
        return True

    def setup(self, ctx: MethodSetup) -> None:
        if ctx.classifier is None:
            raise ValueError("shc needs the warm-up classifier")
        labels = ctx.targets.argmax(dim=1).cpu().numpy()
        was_training = ctx.classifier.training
        ctx.classifier.eval()
        probs = []
        with torch.no_grad():
            for start in range(0, len(ctx.images), 512):
                x = ctx.normalise(ctx.images[start : start + 512])
                probs.append(torch.softmax(ctx.classifier.classify(x), dim=1).cpu().numpy())
        ctx.classifier.train(was_training)
        s = class_similarity(np.concatenate(probs), labels, ctx.n_classes)
        centres, info = semantic_centres(s, ctx.n_bits, seed=ctx.seed, n_iters=self.config.n_iters)
        logger.info("SHC centres: %s", info)
        self.info["centres"] = info
        self.set_centres(torch.from_numpy(centres), ctx.seed)
