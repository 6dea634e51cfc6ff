"""Backbone registry (timm-style): ``create_encoder(name, n_bits=..., binary=...)``."""

from __future__ import annotations

import logging
from collections.abc import Callable

from torch import nn

from odh_core.layers import get_layer_config
from odh_core.models.resnet import HashResNet
from odh_core.models.stats import model_stats
from odh_core.packing import check_n_bits

logger = logging.getLogger(__name__)

__all__ = ["HashResNet", "create_encoder", "default_input_size", "list_encoders", "model_stats"]

_Factory = Callable[..., nn.Module]


def _resnet_small(**kw: object) -> nn.Module:
    return HashResNet(widths=(32, 64, 128), blocks=(2, 2, 2), large_stem=False, **kw)  # type: ignore[arg-type]


def _resnet_small_wide(**kw: object) -> nn.Module:
    """``resnet_small`` at twice the width (an ablation: does width close the BNN's gap?)."""
    return HashResNet(widths=(64, 128, 256), blocks=(2, 2, 2), large_stem=False, **kw)  # type: ignore[arg-type]


def _resnet18(**kw: object) -> nn.Module:
    return HashResNet(widths=(64, 128, 256, 512), blocks=(4, 4, 4, 4), large_stem=True, **kw)  # type: ignore[arg-type]


_REGISTRY: dict[str, tuple[_Factory, int]] = {
    "resnet_small": (_resnet_small, 28),
    "resnet_small_wide": (_resnet_small_wide, 28),
    "resnet18": (_resnet18, 224),
}


def list_encoders() -> list[str]:
    """Registered backbone names."""
    return sorted(_REGISTRY)


def default_input_size(name: str) -> int:
    """The input size (pixels) a backbone is designed for."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown encoder {name!r}; known: {list_encoders()}")
    return _REGISTRY[name][1]


def create_encoder(
    name: str,
    *,
    n_bits: int,
    binary: bool = True,
    layer: str = "reactnet",
    n_classes: int | None = None,
    in_channels: int = 1,
) -> nn.Module:
    """Build a registered hashing backbone. ``binary=False`` gives the full-precision twin."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown encoder {name!r}; known: {list_encoders()}")
    n_bits = check_n_bits(n_bits, "n_bits")
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    if n_classes is not None and n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    cfg = get_layer_config(layer)
    factory = _REGISTRY[name][0]
    return factory(
        n_bits=n_bits, binary=binary, cfg=cfg, in_channels=in_channels, n_classes=n_classes
    )
