"""Model statistics: parameters, fraction of binary multiply-accumulates, packed bytes."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from odh_core.layers import BinaryConv2d

logger = logging.getLogger(__name__)


def model_stats(model: nn.Module, input_size: int, in_channels: int = 1) -> dict[str, Any]:
    """Parameters, MACs (binary / total) per input, bytes with binary weights bit-packed."""
    macs = {"binary": 0, "fp": 0}
    hooks = []

    def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(mod, nn.Conv2d):
            per_out = mod.weight[0].numel()
            n = out[0].numel() * per_out
        else:
            n = mod.weight.numel()
        macs["binary" if isinstance(mod, BinaryConv2d) else "fp"] += int(n)

    for mod in model.modules():
        if isinstance(mod, nn.Conv2d | nn.Linear):
            hooks.append(mod.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    binary_params = sum(m.weight.numel() for m in model.modules() if isinstance(m, BinaryConv2d))
    total_params = sum(p.numel() for p in model.parameters())
    total_macs = macs["binary"] + macs["fp"]
    return {
        "params": int(total_params),
        "binary_params": int(binary_params),
        "macs": int(total_macs),
        "binary_macs": int(macs["binary"]),
        "binary_mac_fraction": macs["binary"] / total_macs if total_macs else 0.0,
        "fp32_bytes": int(total_params * 4),
        "packed_bytes": int((total_params - binary_params) * 4 + (binary_params + 7) // 8),
    }
