"""One training step's loss (split from :mod:`odh_core.stages`)."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from odh_core.augment import STRONG, WEAK, augment
from odh_core.config import TrainConfig
from odh_core.data import TrainData
from odh_core.loop import LoopRng
from odh_core.methods.base import HashMethod, StepInput
from odh_core.speed import memory_format

logger = logging.getLogger(__name__)

__all__ = ["step_loss"]


def step_loss(
    wrapped: nn.Module,
    method: HashMethod,
    data: TrainData,
    idx: np.ndarray,
    stage: int,
    cfg: TrainConfig,
    rngs: LoopRng,
    progress: float,
) -> torch.Tensor:
    """Stage 1: the weak view; stage 2: weak and strong views (the classifier sees the strong),
    in one encoder pass or, when the method asks (``separate_views``), one pass per view."""
    x, y = data.batch(idx)
    fmt = memory_format(cfg)
    weak = data.normalise(augment(x, WEAK, rngs.gen)).contiguous(memory_format=fmt)
    if stage == 1:
        x_in, x_cls, n_views = weak, weak, 1
    else:
        strong = data.normalise(augment(x, STRONG, rngs.gen)).contiguous(memory_format=fmt)
        views = (weak, strong) if method.separate_views else torch.cat([weak, strong])
        x_in, x_cls, n_views = views, strong, 2
    u, extras = wrapped(x_in, x_cls)
    step = StepInput(
        u=u,
        n_views=n_views,
        targets=y,
        idx=torch.from_numpy(np.asarray(idx, dtype=np.int64)),
        extras=extras,
        progress=progress,
        n_pos=cfg.n_pos,
        generator=rngs.agg,
    )
    return method.loss(step, stage)
