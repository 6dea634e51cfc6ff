"""ODH (ALGORITHMS.md §2): semantic self-adaptive centres co-trained with the encoder, L_hc,
code aggregation L_agg in stage 2, and the warm-up classifier's L_cls."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from odh_core.centres import SemanticCentres, csq_centres
from odh_core.losses import (
    aggregation_loss,
    classification_loss,
    distillation_loss,
    hash_centre_loss,
)
from odh_core.methods.base import HashMethod, MethodSetup, StepInput
from odh_core.methods.registry import register_method
from odh_core.options import option

logger = logging.getLogger(__name__)

CENTRES = ("semantic", "hadamard")


@dataclass(frozen=True)
class OdhConfig:
    """ODH's knobs (ALGORITHMS.md §2 defaults)."""

    tau: float = option(0.2, help="temperature of the hash-centre loss")
    w_cls_stage1: float = option(1e-3, help="classification-loss weight in stage 1")
    w_agg: float = option(1e-3, help="aggregation-loss weight in stage 2")
    w_cls_stage2: float = option(1e-4, help="classification-loss weight in stage 2")
    centres: str = option(
        "semantic",
        help="hash centres (hadamard: fixed CSQ centres, an ablation)",
        choices=CENTRES,
    )
    train_classifier_backbone: bool = option(
        False, help="let L_cls train the backbone too (default: W (+BN) only, backbone frozen)"
    )
    hc_strong: bool = option(
        False,
        help="stage 2: L_hc on the strong view too, averaged over both views (the reference "
        "supervises the weak view only)",
    )
    separate_views: bool = option(
        False,
        help="stage 2: one encoder pass per view, each with its own BatchNorm batch statistics "
        "(the reference encodes both views in one pass)",
    )
    w_distill: float = option(
        0.0,
        help="distillation weight (0 = off): KL from the full-precision warm-up classifier's "
        "softmax over classes (temperature distill_temperature) to the softmax of the code's "
        "cosine to the class centres / tau, in stages 1 and 2 (needs semantic centres)",
    )
    distill_temperature: float = option(
        1.0, help="temperature of the teacher's softmax in the distillation term"
    )

    def __post_init__(self) -> None:
        if self.tau <= 0:
            raise ValueError(f"OdhConfig.tau must be positive, got {self.tau}")
        if self.distill_temperature <= 0:
            raise ValueError(
                f"OdhConfig.distill_temperature must be positive, got {self.distill_temperature}"
            )
        if self.w_distill > 0 and self.centres != "semantic":
            raise ValueError(
                "OdhConfig.w_distill needs the warm-up classifier's logits: centres must be "
                f"'semantic', got {self.centres!r}"
            )
        for name in ("w_cls_stage1", "w_agg", "w_cls_stage2", "w_distill"):
            if getattr(self, name) < 0:
                raise ValueError(f"OdhConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.centres not in CENTRES:
            raise ValueError(f"OdhConfig.centres must be one of {CENTRES}, got {self.centres!r}")

    def reference_deviations(self) -> list[str]:
        """The options set away from the reference code (``mode="faithful"`` refuses them: it
        keeps the reference behaviour)."""
        names = [name for name in ("hc_strong", "separate_views") if getattr(self, name)]
        return names + (["w_distill"] if self.w_distill > 0 else [])


@register_method("odh")
class OdhMethod(HashMethod):
    """One-bit Deep Hashing: stage 1 L_hc + w·L_cls; stage 2 L_hc(weak) + w·L_agg + w·L_cls."""

    config_class = OdhConfig
    grouped_stage2 = True
    config: OdhConfig

    @property
    def needs_classifier(self) -> bool:
        return self.config.centres == "semantic"

    @property
    def separate_views(self) -> bool:
        return self.config.separate_views

    def setup(self, ctx: MethodSetup) -> None:
        self.classifier: nn.Module | None = None
        if self.needs_classifier:
            if ctx.classifier is None:
                raise ValueError("odh with semantic centres needs the warm-up classifier")
            self.classifier = ctx.classifier
            self.centre_module = SemanticCentres(ctx.classifier.feature_dim, ctx.n_bits)
            train_bb = self.config.train_classifier_backbone
            for name, p in ctx.classifier.named_parameters():
                trainable = name.startswith("classifier") or (
                    train_bb and not name.startswith("hash_head")
                )
                p.requires_grad_(trainable)
        else:
            c, info = csq_centres(ctx.n_classes, ctx.n_bits, seed=ctx.seed)
            self.info["centres"] = info
            self.register_buffer("fixed_centres", torch.from_numpy(c))

    def train(self, mode: bool = True) -> OdhMethod:
        super().train(mode)
        if self.classifier is not None and not self.config.train_classifier_backbone:
            self.classifier.eval()  # frozen backbone: fixed BN statistics
        return self

    def forward(
        self, u: torch.Tensor, x: torch.Tensor, x_cls: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        if self.classifier is None:
            return {"centres": self.fixed_centres}
        centres = self.centre_module(self.classifier.classifier.weight)
        train_bb = self.config.train_classifier_backbone
        with torch.set_grad_enabled(train_bb and torch.is_grad_enabled()):
            feats = self.classifier.features(x_cls)
        return {"centres": centres, "logits": self.classifier.classify_features(feats)}

    def loss_terms(self, step: StepInput, stage: int) -> dict[str, tuple[float, torch.Tensor]]:
        """The terms of the loss as ``{name: (weight, unweighted value)}``: ``hc`` (L_hc),
        ``agg`` (L_agg, stage 2 only), ``cls`` (L_cls, with the warm-up classifier) and
        ``distill`` (with ``w_distill`` > 0: the classifier's softmax distilled into the codes'
        softmax over the centres; on the strong view in stage 2, the view the classifier
        sees)."""
        cfg = self.config
        centres, logits, y = step.extras["centres"], step.extras.get("logits"), step.targets
        h = torch.tanh(step.u)
        terms: dict[str, tuple[float, torch.Tensor]] = {}
        if stage == 1:
            terms["hc"] = (1.0, hash_centre_loss(h, centres, y, tau=cfg.tau))
            if logits is not None:
                terms["cls"] = (cfg.w_cls_stage1, classification_loss(logits, y))
            if cfg.w_distill > 0 and logits is not None:
                terms["distill"] = (cfg.w_distill, self._distill(h, centres, logits))
            return terms
        n = len(step.idx)
        h_weak, h_strong = h[:n], h[n:]
        l_hc = hash_centre_loss(h_weak, centres, y, tau=cfg.tau)
        if cfg.hc_strong:
            l_hc = (l_hc + hash_centre_loss(h_strong, centres, y, tau=cfg.tau)) / 2
        terms["hc"] = (1.0, l_hc)
        terms["agg"] = (
            cfg.w_agg,
            aggregation_loss(h_strong, h_weak, n_pos=step.n_pos, generator=step.generator),
        )
        if logits is not None:
            terms["cls"] = (cfg.w_cls_stage2, classification_loss(logits, y))
        if cfg.w_distill > 0 and logits is not None:  # the classifier saw the strong view
            terms["distill"] = (cfg.w_distill, self._distill(h_strong, centres, logits))
        return terms

    def _distill(
        self, h: torch.Tensor, centres: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        return distillation_loss(
            h,
            centres.detach(),
            logits.detach(),
            tau=self.config.tau,
            temperature=self.config.distill_temperature,
        )

    def loss(self, step: StepInput, stage: int) -> torch.Tensor:
        terms = iter(self.loss_terms(step, stage).values())
        _, loss = next(terms)  # L_hc, weight 1 (summed as the reference does)
        for weight, value in terms:
            loss = loss + weight * value
        return loss

    def clip_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]
