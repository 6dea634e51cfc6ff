"""The hashing-method interface the training loop calls (it names no method).

A method is an ``nn.Module`` (its parameters and buffers — centre MLP, codebook, memory bank,
decoder — train and checkpoint with the encoder) with its own frozen config class. It declares:

- ``config_class``: its typed, frozen, validated config (only its knobs);
- ``needs_labels``: whether it trains from class labels (an unlabelled set is refused);
- ``needs_classifier``: whether the stage-0 warm-up classifier is trained first;
- ``grouped_stage2``: whether stage 2 draws class-balanced groups of ``n_pos`` images;
- ``setup(ctx)``: builds centres / codebook / state once the data is known;
- ``forward(u, x, x_cls)``: per-step extras computed inside the (DDP-wrapped) module;
- ``loss(step, stage)``: the loss of one step in training stage 1 or 2;
- ``info``: what the method reports (e.g. achieved centre distances), written to provenance.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["HashMethod", "MethodSetup", "StepInput"]


@dataclass
class MethodSetup:
    """What a method may use to build itself (called once per run, on every rank)."""

    n_bits: int
    n_classes: int  # 0 for an unlabelled set
    seed: int
    images: torch.Tensor  # this rank's training images, float [n, C, H, W] in [0, 1]
    targets: torch.Tensor  # float [n, C] multi-hot (C may be 0)
    n_rows: int  # rows a step's ``idx`` may address (memory banks are this long)
    encoder: nn.Module
    classifier: nn.Module | None = None  # the stage-0 classifier when ``needs_classifier``
    normalise: Any = None  # images → normalised network input
    label_distance: torch.Tensor | None = None  # [C, C] hierarchy distances in [0, 1], if any


@dataclass
class StepInput:
    """One training step as a method sees it."""

    u: torch.Tensor  # real outputs ``[n_views · n, K]``: weak views first, then strong
    n_views: int  # 1 in stage 1, 2 (weak, strong) in stage 2
    targets: torch.Tensor  # float [n, C] multi-hot (C may be 0)
    idx: torch.Tensor  # long [n]: the rows of the batch in the training data
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    progress: float = 0.0  # share of the training steps done, in [0, 1]
    n_pos: int = 2  # stage 2: rows ``g·n_pos … (g+1)·n_pos − 1`` form a same-class group
    generator: torch.Generator | None = None

    def views(self) -> list[torch.Tensor]:
        return list(self.u.chunk(self.n_views, dim=0))


class HashMethod(nn.Module):
    """Base class of the registered hashing methods."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type]
    needs_labels: ClassVar[bool] = True
    grouped_stage2: ClassVar[bool] = False

    def __init__(self, config: Any) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = config
        self.info: dict[str, Any] = {}

    @property
    def needs_classifier(self) -> bool:
        return False

    @property
    def separate_views(self) -> bool:
        """Stage 2: one encoder pass per view (each with its own BatchNorm batch statistics)
        instead of one pass over both views concatenated."""
        return False

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def setup(self, ctx: MethodSetup) -> None:
        """Build centres, codebooks and state once the data is known."""

    def forward(
        self, u: torch.Tensor, x: torch.Tensor, x_cls: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Extras of one step, computed inside the wrapped module (default: none)."""
        return {}

    def view_loss(self, u: torch.Tensor, step: StepInput) -> torch.Tensor:
        """The loss of one view's outputs ``u`` ``[n, K]`` (methods with one loss for all
        stages implement this; stage 2 averages it over the weak and strong views)."""
        raise NotImplementedError

    def loss(self, step: StepInput, stage: int) -> torch.Tensor:
        views = step.views()
        return torch.stack([self.view_loss(v, step) for v in views]).mean()

    def clip_parameters(self) -> list[nn.Parameter]:
        """Parameters whose gradient norm is clipped at ``TrainConfig.grad_clip``."""
        return [p for p in self.parameters() if p.requires_grad]


def pair_similarity(targets: torch.Tensor) -> torch.Tensor:
    """``s_ij = 1`` when rows i and j share a label, else 0 (float ``[n, n]``)."""
    return (targets @ targets.T > 0).float()


def class_ids_or_none(targets: torch.Tensor) -> np.ndarray | None:
    """Single-label class ids of multi-hot rows, or None when some row is multi-label."""
    t = targets.detach().cpu().numpy() > 0
    if (t.sum(axis=1) != 1).any():
        return None
    return t.argmax(axis=1)
