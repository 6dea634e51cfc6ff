"""The module trained in stages 1–2: encoder + (ODH) centre MLP and classifier, or fixed centres."""

from __future__ import annotations

import logging

import torch
from torch import nn

from odh_core.centres import SemanticCentres

logger = logging.getLogger(__name__)


class ClassifierView(nn.Module):
    """DDP-friendly wrapper: forward = classifier logits of a backbone built with ``n_classes``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        for p in model.hash_head.parameters():  # unused by classify(): DDP must not wait for it
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.classify(x)


class HashTrainModule(nn.Module):
    """Encoder + (ODH) centre MLP and warm-up classifier, or fixed (CSQ/Hadamard) centres.

    With a ``classifier`` the centres are the semantic self-adaptive centres of its class rows
    (recomputed every forward); otherwise ``centres`` is a fixed ±1 ``[C, K]`` buffer.
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        classifier: nn.Module | None,
        centres: torch.Tensor | None,
        train_classifier_backbone: bool,
    ) -> None:
        super().__init__()
        if (classifier is None) == (centres is None):
            raise ValueError("give exactly one of classifier and centres")
        self.encoder = encoder
        self.classifier = classifier
        self.train_classifier_backbone = train_classifier_backbone
        if classifier is not None:
            self.centre_module = SemanticCentres(classifier.feature_dim, encoder.n_bits)
            for name, p in classifier.named_parameters():
                trainable = name.startswith("classifier") or (
                    train_classifier_backbone and not name.startswith("hash_head")
                )
                p.requires_grad_(trainable)
        else:
            self.register_buffer("fixed_centres", centres)

    def train(self, mode: bool = True) -> HashTrainModule:
        super().train(mode)
        if self.classifier is not None and not self.train_classifier_backbone:
            self.classifier.eval()  # frozen backbone: fixed BN statistics
        return self

    def forward(
        self, x: torch.Tensor, x_cls: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Returns (u for x, centres, classifier logits for x_cls or None)."""
        u = self.encoder(x)
        if self.classifier is None:
            return u, self.fixed_centres, None
        centres = self.centre_module(self.classifier.classifier.weight)
        with torch.set_grad_enabled(self.train_classifier_backbone and torch.is_grad_enabled()):
            feats = self.classifier.features(x_cls)
        return u, centres, self.classifier.classify_features(feats)
