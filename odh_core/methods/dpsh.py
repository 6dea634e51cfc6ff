"""DPSH (ALGORITHMS.md §3): pairwise likelihood against a memory bank of training outputs."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from odh_core.methods.base import HashMethod, MethodSetup, StepInput
from odh_core.methods.registry import register_method
from odh_core.options import option

logger = logging.getLogger(__name__)


def dpsh_loss(u: torch.Tensor, bank: torch.Tensor, s: torch.Tensor, *, eta: float) -> torch.Tensor:
    """mean_ij [log(1 + e^{−|θ_ij|}) + max(θ_ij, 0) − s_ij θ_ij] + η · mean((u − sign u)²),
    θ_ij = ½ u_iᵀ U_j (the numerically stable form of log(1 + e^θ) − s θ)."""
    theta = 0.5 * u @ bank.T
    like = F.softplus(-theta.abs()) + theta.clamp_min(0) - s * theta
    quant = ((u - torch.sign(u).detach()) ** 2).mean()
    return like.mean() + eta * quant


@dataclass(frozen=True)
class DpshConfig:
    """DPSH's knobs."""

    eta: float = option(0.1, help="quantisation-loss weight η")

    def __post_init__(self) -> None:
        if self.eta < 0:
            raise ValueError(f"DpshConfig.eta must be >= 0, got {self.eta}")


@register_method("dpsh")
class DpshMethod(HashMethod):
    """DPSH with a memory bank ``U`` (one row per training image, written as batches pass)."""

    config_class = DpshConfig
    config: DpshConfig

    def setup(self, ctx: MethodSetup) -> None:
        n = ctx.n_rows
        self.register_buffer("bank", torch.zeros(n, ctx.n_bits))
        self.register_buffer("bank_targets", torch.zeros(n, ctx.n_classes))
        self.register_buffer("seen", torch.zeros(n, dtype=torch.bool))

    def view_loss(self, u: torch.Tensor, step: StepInput) -> torch.Tensor:
        idx = step.idx.to(self.bank.device)
        with torch.no_grad():  # the bank holds the latest output of every row seen
            self.bank[idx] = u.detach().to(self.bank)
            self.bank_targets[idx] = step.targets.to(self.bank_targets)
            self.seen[idx] = True
        rows = self.seen.nonzero().squeeze(1)
        s = (step.targets.float() @ self.bank_targets[rows].T > 0).float()
        return dpsh_loss(u, self.bank[rows], s, eta=self.config.eta)
