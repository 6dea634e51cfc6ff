"""Training-speed settings of a :class:`~odh_core.config.TrainConfig`, applied by the loop.

``kernels`` (the sign/estimator implementation), ``channels_last`` (memory format of the
convolutions) and ``compile_model`` (``torch.compile``) change how fast a step runs, not what it
computes (up to float rounding: see ``odh bench train-speed`` and ``tests/odh_core/
test_train_speed.py``).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from odh_core.config import TrainConfig
from odh_core.layers import set_kernels

logger = logging.getLogger(__name__)

__all__ = ["apply_speed_settings", "maybe_compile", "memory_format"]


def memory_format(cfg: TrainConfig) -> torch.memory_format:
    """``torch.channels_last`` when ``cfg.channels_last``, else the contiguous (NCHW) format."""
    return torch.channels_last if cfg.channels_last else torch.contiguous_format


def apply_speed_settings(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """``cfg``'s estimator kernels and memory format applied to ``model`` in place (returned).

    The memory format moves the 4-D parameters only; the loop converts each batch of inputs."""
    set_kernels(model, cfg.kernels)
    return model.to(memory_format=memory_format(cfg))


def maybe_compile(module: nn.Module, cfg: TrainConfig) -> nn.Module:
    """``torch.compile(module)`` when ``cfg.compile_model``, else ``module``.

    Dynamo recompiles once per new input shape (an epoch's last, smaller batch; the two-view
    stage-2 batches), so compile time is paid a few times per run."""
    if not cfg.compile_model:
        return module
    logger.info(
        "torch.compile of %s (first steps are slow while it compiles)", type(module).__name__
    )
    return torch.compile(module)  # type: ignore[return-value]
