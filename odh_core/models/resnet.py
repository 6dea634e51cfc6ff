"""ReActNet / Bi-Real style ResNets: FP stem, binary 3×3 conv blocks, FP hash head."""

from __future__ import annotations

import logging

import torch
from torch import nn

from odh_core.layers import BasicBlock, LayerConfig

logger = logging.getLogger(__name__)


class HashResNet(nn.Module):
    """A hashing ResNet: ``forward(x) -> u`` (real K outputs), ``features(x) -> [n, D]``.

    With ``n_classes`` set it also carries a bias-free linear C×D classifier + BatchNorm1d(C)
    (``classify(x)``), the warm-up classifier whose rows are the ODH class semantics.
    """

    def __init__(
        self,
        *,
        n_bits: int,
        binary: bool,
        cfg: LayerConfig,
        widths: tuple[int, ...],
        blocks: tuple[int, ...],
        in_channels: int,
        large_stem: bool,
        n_classes: int | None,
    ) -> None:
        super().__init__()
        self.n_bits = n_bits
        self.binary = binary
        self.layer = cfg.name if binary else "fp"
        w0 = widths[0]
        if large_stem:
            stem: list[nn.Module] = [
                nn.Conv2d(in_channels, w0, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(w0),
            ]
        else:
            stem = [
                nn.Conv2d(in_channels, w0, 3, stride=1, padding=1, bias=False),
                nn.BatchNorm2d(w0),
            ]
        if not binary:
            stem.append(nn.ReLU())
        elif cfg.bn_act == "hardtanh":
            stem.append(nn.Hardtanh())  # the reference's Hardtanh after each BatchNorm
        if large_stem:
            stem.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        layers: list[nn.Module] = []
        in_ch = w0
        for stage, (width, n_blocks) in enumerate(zip(widths, blocks, strict=True)):
            for b in range(n_blocks):
                stride = 2 if (stage > 0 and b == 0) else 1
                layers.append(BasicBlock(in_ch, width, stride, binary=binary, cfg=cfg))
                in_ch = width
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = in_ch
        head: list[nn.Module] = [nn.Linear(in_ch, n_bits)]
        if cfg.head_bn:
            head.append(nn.BatchNorm1d(n_bits))
        self.hash_head = nn.Sequential(*head)
        self.n_classes = n_classes
        if n_classes is not None:
            self.classifier = nn.Linear(in_ch, n_classes, bias=False)
            self.classifier_bn = nn.BatchNorm1d(n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled ``[n, D]`` features."""
        return torch.flatten(self.pool(self.body(self.stem(x))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Real-valued hash outputs ``u`` of shape ``[n, n_bits]`` (bits are ``u >= 0``)."""
        return self.hash_head(self.features(x))

    def classify_features(self, feats: torch.Tensor) -> torch.Tensor:
        if self.n_classes is None:
            raise ValueError("this model was built without n_classes; it has no classifier")
        return self.classifier_bn(self.classifier(feats))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``BN(f(x)·Wᵀ)``."""
        return self.classify_features(self.features(x))
