"""SH-BDNN (supervised) and UH-BDNN (unsupervised) constraints of the BDNN paper (ALGORITHMS.md
§3) as losses on a batch ``H = uᵀ`` (K × m).

UH-BDNN's input features X (this project's choice): the image average-pooled to
``feature_side × feature_side`` per channel and standardised with the training mean/std — a fixed
feature, as the spec asks. The binary codes B = sign(H) reach the decoder through a
straight-through estimator, so the reconstruction term trains the encoder as well as the decoder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from odh_core.methods.base import HashMethod, MethodSetup, StepInput, pair_similarity
from odh_core.methods.registry import register_method
from odh_core.options import option

logger = logging.getLogger(__name__)


def bdnn_terms(u: torch.Tensor) -> dict[str, torch.Tensor]:
    """The label-free BDNN terms of outputs ``u`` ``[m, K]`` (H = uᵀ, B = sign(H) detached):
    binary ‖H − B‖²/(2m), independence ½‖HHᵀ/m − I‖², balance ‖H·1‖²/(2m)."""
    m, k = u.shape
    b = torch.where(u >= 0, 1.0, -1.0).to(u).detach()
    eye = torch.eye(k, device=u.device, dtype=u.dtype)
    return {
        "binary": ((u - b) ** 2).sum() / (2 * m),
        "independence": 0.5 * ((u.T @ u / m - eye) ** 2).sum(),
        "balance": (u.sum(dim=0) ** 2).sum() / (2 * m),
    }


def bdnn_similarity(u: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """½‖HᵀH/K − S‖²/m with S ∈ {±1} ``[m, m]``."""
    m, k = u.shape
    return 0.5 * ((u @ u.T / k - s) ** 2).sum() / m


def sign_ste(u: torch.Tensor) -> torch.Tensor:
    """sign(u) (sign(0) = +1) forward, identity backward."""
    return u + (torch.where(u >= 0, 1.0, -1.0).to(u) - u).detach()


def reconstruction(x: torch.Tensor, b: torch.Tensor, decoder: nn.Linear) -> torch.Tensor:
    """‖X − W_rec·B − c‖²/(2m) over a batch of features ``x`` ``[m, D]`` and codes ``b``."""
    return ((x - decoder(b)) ** 2).sum() / (2 * x.shape[0])


@dataclass(frozen=True)
class BdnnConfig:
    """SH-BDNN's weights (reference: 5e-2, 1e-2, 5e-7, 1e-2)."""

    w_binary: float = option(5e-2, help="weight of the binary term ‖H − B‖²/(2m)")
    w_independence: float = option(1e-2, help="weight of the independence term")
    w_balance: float = option(5e-7, help="weight of the balance term")
    w_similarity: float = option(1e-2, help="weight of the similarity term")

    def __post_init__(self) -> None:
        for name in ("w_binary", "w_independence", "w_balance", "w_similarity"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"{type(self).__name__}.{name} must be >= 0, got {getattr(self, name)}"
                )


@dataclass(frozen=True)
class BdnnUnsupConfig:
    """UH-BDNN's weights: the BDNN terms + reconstruction from the binary codes."""

    w_binary: float = option(5e-2, help="weight of the binary term ‖H − B‖²/(2m)")
    w_independence: float = option(1e-2, help="weight of the independence term")
    w_balance: float = option(5e-7, help="weight of the balance term")
    w_reconstruction: float = option(1e-2, help="weight of the reconstruction term")
    feature_side: int = option(7, help="X = the image average-pooled to this side, per channel")

    def __post_init__(self) -> None:
        for name in ("w_binary", "w_independence", "w_balance", "w_reconstruction"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"{type(self).__name__}.{name} must be >= 0, got {getattr(self, name)}"
                )
        if self.feature_side < 1:
            raise ValueError(f"BdnnUnsupConfig.feature_side must be >= 1: {self.feature_side}")


def _weighted(terms: dict[str, torch.Tensor], cfg: object) -> torch.Tensor:
    return sum(getattr(cfg, f"w_{name}") * value for name, value in terms.items())  # type: ignore[return-value]


@register_method("bdnn")
class BdnnMethod(HashMethod):
    """SH-BDNN: binary, independence, balance and similarity terms (S from shared labels)."""

    config_class = BdnnConfig
    config: BdnnConfig

    def view_loss(self, u: torch.Tensor, step: StepInput) -> torch.Tensor:
        terms = bdnn_terms(u)
        terms["similarity"] = bdnn_similarity(u, 2 * pair_similarity(step.targets) - 1)
        return _weighted(terms, self.config)


@register_method("bdnn-unsup")
class BdnnUnsupMethod(HashMethod):
    """UH-BDNN: the BDNN terms with reconstruction of X from the binary codes; no labels."""

    config_class = BdnnUnsupConfig
    needs_labels = False
    config: BdnnUnsupConfig

    def setup(self, ctx: MethodSetup) -> None:
        side = self.config.feature_side
        with torch.no_grad():
            feats = self._features(ctx.images[: min(len(ctx.images), 4096)])
        self.register_buffer("x_mean", feats.mean(dim=0))
        self.register_buffer("x_std", feats.std(dim=0).clamp_min(1e-3))
        self.decoder = nn.Linear(ctx.n_bits, ctx.images.shape[1] * side * side)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(x, self.config.feature_side), 1)

    def forward(
        self, u: torch.Tensor, x: torch.Tensor, x_cls: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        target = (self._features(x) - self.x_mean) / self.x_std
        return {"recon": reconstruction(target, sign_ste(u), self.decoder)}

    def loss(self, step: StepInput, stage: int) -> torch.Tensor:
        views = step.views()
        terms = [bdnn_terms(v) for v in views]
        total = sum(_weighted(t, self.config) for t in terms) / len(views)
        return total + self.config.w_reconstruction * step.extras["recon"] / len(views)
