"""Model statistics: parameters, fraction of binary multiply-accumulates, bytes of each form."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from odh_core.layers import BinaryConv2d

logger = logging.getLogger(__name__)


def packed_form_bytes(model: nn.Module) -> dict[str, int] | None:
    """Real bytes of the bit-packed inference form (:class:`~odh_core.packed.PackedNet`):
    ``binary`` (the kernels' packed weight words), ``fp`` (stem, BN, shifts, shortcuts, head),
    ``corr`` (border-correction table, derived from the bits at load), ``total``; None when the
    packed path cannot run the model (full-precision twins)."""
    from odh_core.packed import PackedNet, packed_unsupported_reason

    if packed_unsupported_reason(model) is not None:
        return None
    was_training = model.training
    try:
        return PackedNet.from_model(model).nbytes()
    finally:
        model.train(was_training)


def _mac_kind(mod: nn.Module) -> str:
    """``binary`` for a conv with 1-bit weights AND 1-bit activations (XNOR/popcount);
    ``binary_weight_only`` for 1-bit weights on real activations (``xnor_weight_only``: its
    MACs are real multiply-accumulates, never XNOR/popcount); ``fp`` otherwise."""
    if not isinstance(mod, BinaryConv2d):
        return "fp"
    return "binary_weight_only" if mod.cfg.act_backward == "none" else "binary"


def model_stats(model: nn.Module, input_size: int, in_channels: int = 1) -> dict[str, Any]:
    """Parameters, MACs (binary / total) per input and bytes per form.

    ``binary_macs`` counts only convolutions whose weights and activations are both 1-bit
    (the XNOR/popcount work); the ``xnor_weight_only`` layer's convolutions (binary weights, real
    activations) count in ``binary_weight_only_macs`` and not in ``binary_mac_fraction``.

    ``fp32_bytes``: all parameters as float32; ``packed_bytes``: the real bytes of the bit-packed
    inference form (``packed_form_bytes(...)["total"]``; for a full-precision model its float32
    inference tensors), with the breakdown in ``packed_binary_bytes`` / ``packed_fp_bytes`` /
    ``packed_corr_bytes``.
    """
    macs = {"binary": 0, "fp": 0, "binary_weight_only": 0}
    hooks = []

    def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(mod, nn.Conv2d):
            per_out = mod.weight[0].numel()
            n = out[0].numel() * per_out
        else:
            n = mod.weight.numel()
        macs[_mac_kind(mod)] += int(n)

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
    total_macs = macs["binary"] + macs["fp"] + macs["binary_weight_only"]
    form = packed_form_bytes(model)
    if form is None:
        skip = ("classifier.", "classifier_bn.")
        fp_bytes = sum(
            t.numel() * t.element_size()
            for k, t in model.state_dict().items()
            if t.is_floating_point() and not k.startswith(skip)
        )
        form = {"binary": 0, "fp": int(fp_bytes), "corr": 0, "total": int(fp_bytes)}
    return {
        "params": int(total_params),
        "binary_params": int(binary_params),
        "macs": int(total_macs),
        "binary_macs": int(macs["binary"]),
        "binary_mac_fraction": macs["binary"] / total_macs if total_macs else 0.0,
        "binary_weight_only_macs": int(macs["binary_weight_only"]),
        "fp32_bytes": int(total_params * 4),
        "packed_bytes": int(form["total"]),
        "packed_binary_bytes": int(form["binary"]),
        "packed_fp_bytes": int(form["fp"]),
        "packed_corr_bytes": int(form["corr"]),
    }
