"""CSQ (ALGORITHMS.md §3): fixed Hadamard / balanced random centres and the CSQ loss."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from odh_core.centres import csq_centres, multilabel_centres
from odh_core.losses import csq_loss
from odh_core.methods.base import HashMethod, MethodSetup, StepInput
from odh_core.methods.registry import register_method
from odh_core.options import option

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CsqConfig:
    """CSQ's knobs."""

    lam: float = option(1e-4, help="quantisation-loss weight λ")

    def __post_init__(self) -> None:
        if self.lam < 0:
            raise ValueError(f"CsqConfig.lam must be >= 0, got {self.lam}")


class CentreLossMethod(HashMethod):
    """Fixed per-class centres + the CSQ loss (CSQ, and SHC on its own centres)."""

    grouped_stage2 = True
    config: CsqConfig

    def set_centres(self, centres: torch.Tensor, seed: int) -> None:
        self.seed = seed
        self.register_buffer("fixed_centres", centres.float())

    def view_loss(self, u: torch.Tensor, step: StepInput) -> torch.Tensor:
        c = multilabel_centres(self.fixed_centres, step.targets, seed=self.seed)
        return csq_loss(torch.tanh(u), c, lam=self.config.lam)


@register_method("csq")
class CsqMethod(CentreLossMethod):
    """Central Similarity Quantization: BCE to the class centre + λ·quantisation."""

    config_class = CsqConfig

    def setup(self, ctx: MethodSetup) -> None:
        c, info = csq_centres(ctx.n_classes, ctx.n_bits, seed=ctx.seed)
        logger.info("fixed centres %s", info)
        self.info["centres"] = info
        self.set_centres(torch.from_numpy(c), ctx.seed)
