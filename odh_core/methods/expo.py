"""The exponentiated hashing loss — this project's rendering of the "joint approach" deep
hashing paper's idea (ALGORITHMS.md §3): for pairs i ≠ j,
``exp(−s_ij · (1/K) Σ_k tanh(β u_ik) tanh(β u_jk))`` with s ∈ {±1}, a smooth bilinear surrogate of
the product of two signs; β rises log-linearly from ``beta_start`` to ``beta_end`` over training.
With ``pretrain`` the stage-0 classification warm-up pre-trains the backbone: its weights are
copied into the encoder wherever the shapes agree (all of it for the full-precision twin).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from odh_core.methods.base import HashMethod, MethodSetup, StepInput, pair_similarity
from odh_core.methods.registry import register_method
from odh_core.options import option

logger = logging.getLogger(__name__)


def expo_loss(u: torch.Tensor, s: torch.Tensor, *, beta: float) -> torch.Tensor:
    """mean over i ≠ j of exp(−s_ij · (1/K) Σ_k tanh(β u_ik) tanh(β u_jk)), s ∈ {±1}."""
    n, k = u.shape
    t = torch.tanh(beta * u)
    e = torch.exp(-s * (t @ t.T) / k)
    off = ~torch.eye(n, dtype=torch.bool, device=u.device)
    return e[off].mean()


def annealed_beta(start: float, end: float, progress: float) -> float:
    """β at ``progress`` ∈ [0, 1]: log-linear from ``start`` to ``end``."""
    p = min(max(progress, 0.0), 1.0)
    return math.exp(math.log(start) + p * (math.log(end) - math.log(start)))


@dataclass(frozen=True)
class ExpoConfig:
    """The exponentiated loss's knobs."""

    beta_start: float = option(1.0, help="β at the start of training")
    beta_end: float = option(10.0, help="β at the end of training (annealed upward)")
    pretrain: bool = option(True, help="pre-train the backbone as a classifier (stage 0)")

    def __post_init__(self) -> None:
        if not 0 < self.beta_start <= self.beta_end:
            raise ValueError(
                "ExpoConfig: need 0 < beta_start <= beta_end, "
                f"got {self.beta_start}, {self.beta_end}"
            )


@register_method("expo")
class ExpoMethod(HashMethod):
    """Exponentiated pairwise loss with β annealing and classifier pre-training."""

    config_class = ExpoConfig
    config: ExpoConfig

    @property
    def needs_classifier(self) -> bool:
        return self.config.pretrain

    def setup(self, ctx: MethodSetup) -> None:
        if ctx.classifier is None:
            return
        src = ctx.classifier.state_dict()
        dst = ctx.encoder.state_dict()
        copied = {
            k: v
            for k, v in src.items()
            if k in dst and dst[k].shape == v.shape and not k.startswith("hash_head")
        }
        ctx.encoder.load_state_dict(copied, strict=False)
        self.info["pretrained_tensors"] = len(copied)
        logger.info("expo: %d backbone tensors from the pre-trained classifier", len(copied))

    def view_loss(self, u: torch.Tensor, step: StepInput) -> torch.Tensor:
        beta = annealed_beta(self.config.beta_start, self.config.beta_end, step.progress)
        return expo_loss(u, 2 * pair_similarity(step.targets) - 1, beta=beta)
