"""The module trained in stages 1–2: the encoder and the hashing method's own module."""

from __future__ import annotations

import logging

import torch
from torch import nn

from odh_core.methods.base import HashMethod

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
    """Encoder + the hashing method's own module (centres, classifier, codebook, bank, decoder).

    ``forward(x, x_cls)`` returns the encoder outputs ``u`` for ``x`` (a tuple of views: one
    encoder pass per view, outputs concatenated in order) and the method's per-step extras
    (computed here, inside the DDP-wrapped module, so their gradients are reduced).
    """

    def __init__(self, encoder: nn.Module, method: HashMethod) -> None:
        super().__init__()
        self.encoder = encoder
        self.method = method

    def forward(
        self, x: torch.Tensor | tuple[torch.Tensor, ...], x_cls: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if isinstance(x, tuple):  # one encoder pass per view (own BatchNorm batch statistics)
            u = torch.cat([self.encoder(v) for v in x])
            x = torch.cat(x)
        else:
            u = self.encoder(x)
        return u, self.method(u, x, x_cls)
