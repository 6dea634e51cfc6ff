"""SHREWD (Arponen & Bishop 2019/2020; ALGORITHMS.md §3): relative code distances in a batch
matched to relative semantic distances, plus an empirical (k-NN) KL divergence between the
batch's continuous codes and a uniform binary target distribution.

Codes are h = tanh(u); the code distance is ‖h_i − h_j‖²/(4K) (the Hamming distance / K for ±1
codes). Semantic distances: with a class hierarchy, the normalised tree distance of the two
classes; without one, 1 − s_ij. The weakly-supervised mode (``weak``) uses only the pairwise
label similarities s_ij, never class ids. The optional classification term of the papers is not
included.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from odh_core.methods.base import (
    HashMethod,
    MethodSetup,
    StepInput,
    class_ids_or_none,
    pair_similarity,
)
from odh_core.methods.registry import register_method
from odh_core.options import option

logger = logging.getLogger(__name__)


def relative_distance_loss(h: torch.Tensor, label_dist: torch.Tensor) -> torch.Tensor:
    """mean_{i≠j} (d_ij / mean d − D_ij / mean D)², d_ij = ‖h_i − h_j‖²/(4K)."""
    n, k = h.shape
    off = ~torch.eye(n, dtype=torch.bool, device=h.device)
    d = ((h[:, None, :] - h[None, :, :]) ** 2).sum(dim=2)[off] / (4 * k)
    t = label_dist.to(h)[off]
    d_rel = d / d.mean().clamp_min(1e-8)
    t_rel = t / t.mean() if float(t.mean()) > 0 else t
    return ((d_rel - t_rel) ** 2).mean()


def knn_kl(h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-NN estimate of KL(P_h ‖ P_target) from n samples h and m target samples:
    (K/n)·Σ_i log(ν_i / ρ_i) + log(m / (n − 1)), ρ_i the distance to the nearest other h,
    ν_i the distance to the nearest target sample."""
    n, k = h.shape
    m = targets.shape[0]
    dh = torch.cdist(h, h) + torch.eye(n, device=h.device, dtype=h.dtype) * 1e9
    rho = dh.min(dim=1).values.clamp_min(1e-8)
    nu = torch.cdist(h, targets.to(h)).min(dim=1).values.clamp_min(1e-8)
    return k * torch.log(nu / rho).mean() + math.log(m / (n - 1))


@dataclass(frozen=True)
class ShrewdConfig:
    """SHREWD's knobs."""

    w_similarity: float = option(1.0, help="weight of the relative-distance loss")
    w_kl: float = option(1e-3, help="weight of the empirical KL term")
    weak: bool = option(False, help="weakly supervised: pairwise label similarity only")

    def __post_init__(self) -> None:
        for name in ("w_similarity", "w_kl"):
            if getattr(self, name) < 0:
                raise ValueError(f"ShrewdConfig.{name} must be >= 0, got {getattr(self, name)}")


@register_method("shrewd")
class ShrewdMethod(HashMethod):
    """Relative semantic distances + empirical KL to a uniform binary distribution."""

    config_class = ShrewdConfig
    config: ShrewdConfig

    def setup(self, ctx: MethodSetup) -> None:
        self.seed = ctx.seed
        self.label_distance = None if self.config.weak else ctx.label_distance

    def semantic_distance(self, targets: torch.Tensor) -> torch.Tensor:
        if self.label_distance is not None:
            ids = class_ids_or_none(targets)
            if ids is not None:
                t = torch.from_numpy(ids).to(targets.device)
                return self.label_distance.to(targets)[t][:, t]
        return 1.0 - pair_similarity(targets)

    def view_loss(self, u: torch.Tensor, step: StepInput) -> torch.Tensor:
        h = torch.tanh(u)
        sim = relative_distance_loss(h, self.semantic_distance(step.targets))
        gen = step.generator
        bits = torch.rand(h.shape, generator=gen) if gen is not None else torch.rand(h.shape)
        target = torch.where(bits < 0.5, -1.0, 1.0).to(h)
        return self.config.w_similarity * sim + self.config.w_kl * knn_kl(h, target)
