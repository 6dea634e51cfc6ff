"""OrthoHash / OrthoCos (ALGORITHMS.md §3): cosine logits to a fixed ±1 codebook, an additive
margin on the positive logits, a scale, softmax cross-entropy. The balance mechanism is the
encoder head's BatchNorm1d(K) (the ``reactnet`` head has it; other heads are used as built)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from odh_core.centres import hadamard
from odh_core.methods.base import HashMethod, MethodSetup, StepInput
from odh_core.methods.registry import register_method
from odh_core.options import option

logger = logging.getLogger(__name__)

CODEBOOKS = ("bernoulli", "hadamard")


def orthocos_loss(
    u: torch.Tensor, codebook: torch.Tensor, targets: torch.Tensor, *, margin: float, scale: float
) -> torch.Tensor:
    """mean_i Σ_c −t_ic · log softmax_c(s · (cos(u_i, o_c) − m · y_ic)), t = y / Σy."""
    y = targets.to(u)
    cos = F.normalize(u, dim=1, eps=1e-8) @ F.normalize(codebook.to(u), dim=1).T
    logits = scale * (cos - margin * y)
    t = y / y.sum(dim=1, keepdim=True).clamp_min(1.0)
    return -(t * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def bernoulli_codebook(n_classes: int, n_bits: int, seed: int) -> np.ndarray:
    """``float32[C, K]`` of seeded Bernoulli(½) ±1 entries."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random((n_classes, n_bits)) < 0.5, -1.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class OrthoHashConfig:
    """OrthoHash's knobs."""

    margin: float = option(0.2, help="margin subtracted from the positive cosine logits")
    scale: float = option(8.0, help="logit scale s")
    codebook: str = option("bernoulli", help="fixed codebook", choices=CODEBOOKS)

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError(f"OrthoHashConfig.scale must be positive, got {self.scale}")
        if not 0 <= self.margin < 2:
            raise ValueError(f"OrthoHashConfig.margin must be in [0, 2), got {self.margin}")
        if self.codebook not in CODEBOOKS:
            raise ValueError(
                f"OrthoHashConfig.codebook must be one of {CODEBOOKS}, got {self.codebook!r}"
            )


@register_method("orthohash")
class OrthoHashMethod(HashMethod):
    """OrthoCos with a fixed codebook (one loss for all stages)."""

    config_class = OrthoHashConfig
    config: OrthoHashConfig

    def setup(self, ctx: MethodSetup) -> None:
        k, c = ctx.n_bits, ctx.n_classes
        if self.config.codebook == "hadamard" and c <= k and not k & (k - 1):
            book = hadamard(k)[:c].astype(np.float32)
        else:
            book = bernoulli_codebook(c, k, ctx.seed)
        self.register_buffer("codebook", torch.from_numpy(book))

    def view_loss(self, u: torch.Tensor, step: StepInput) -> torch.Tensor:
        cfg = self.config
        return orthocos_loss(u, self.codebook, step.targets, margin=cfg.margin, scale=cfg.scale)
