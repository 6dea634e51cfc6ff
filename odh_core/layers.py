"""BNN layers: layer configs (xnor, bireal, reactnet, irnet), binary conv, RSign, RPReLU, blocks."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from odh_core.binary import binarize_activation, binarize_weight, check_kernels, ede_t

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerConfig:
    """How a binary layer binarises activations and weights, and what follows the block."""

    name: str
    act_backward: str  # clip | approx | ede | none (real activations)
    weight_mode: str  # xnor | scaled | irnet
    learnable_shift: bool  # RSign: sign(x − β), β per channel
    post_act: str  # rprelu | hardtanh | identity
    head_bn: bool  # BatchNorm1d(K) after the hash projection
    bn_act: str = (
        "identity"  # after every BatchNorm of the binary body (and stem): hardtanh | identity
    )


LAYER_CONFIGS: dict[str, LayerConfig] = {
    "xnor": LayerConfig("xnor", "clip", "xnor", False, "identity", False),
    "bireal": LayerConfig("bireal", "approx", "scaled", False, "identity", False),
    "reactnet": LayerConfig("reactnet", "approx", "scaled", True, "rprelu", True),
    "irnet": LayerConfig("irnet", "ede", "irnet", False, "hardtanh", False),
    # the reference code's "XNOR": binary weights, REAL activations (mode="faithful" only), with
    # the reference's Hardtanh after each BatchNorm and after the residual add (without them the
    # network would be an affine function of its input)
    "xnor_weight_only": LayerConfig(
        "xnor_weight_only", "none", "xnor", False, "hardtanh", False, bn_act="hardtanh"
    ),
}


#: Built from another layer name only (``TrainConfig.effective_layer``), never chosen directly.
INTERNAL_LAYERS = ("xnor_weight_only",)


def list_layers() -> list[str]:
    """The BNN layer variants a training config may name (``TrainConfig.layer``)."""
    return [name for name in LAYER_CONFIGS if name not in INTERNAL_LAYERS]


def get_layer_config(layer: str) -> LayerConfig:
    """The named layer config; raises ValueError naming the known ones."""
    try:
        return LAYER_CONFIGS[layer]
    except KeyError:
        raise ValueError(f"layer must be one of {sorted(LAYER_CONFIGS)}, got {layer!r}") from None


class RPReLU(nn.Module):
    """ReActNet RPReLU: shift, per-channel PReLU, shift."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.shift_in = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.prelu = nn.PReLU(channels, init=0.25)
        self.shift_out = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.kernels = "fused"  # odh_core.binary.KERNELS (set_kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernels == "fused":
            from odh_core.fused_rprelu import can_fuse, rprelu

            if can_fuse(x):
                return rprelu(x, self.shift_in, self.prelu.weight, self.shift_out)
        return self.prelu(x - self.shift_in) + self.shift_out


class BinaryActivation(nn.Module):
    """sign(x − β) (β learnable per channel when ``learnable_shift``) with the config's STE."""

    def __init__(self, channels: int, cfg: LayerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.shift = nn.Parameter(torch.zeros(1, channels, 1, 1)) if cfg.learnable_shift else None
        self.ede_t = 1.0  # a Python float: no device sync per forward
        self.kernels = "fused"  # odh_core.binary.KERNELS (set_kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shift is not None:
            x = x - self.shift
        return binarize_activation(x, self.cfg.act_backward, self.ede_t, self.kernels)


class BinaryConv2d(nn.Conv2d):
    """Conv2d whose weights are binarised per the layer config (inputs are binarised outside)."""

    def __init__(self, *args: object, cfg: LayerConfig, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.cfg = cfg
        self.ede_t = 1.0  # a Python float: no device sync per forward
        # two-step training, step 1 (TrainConfig.two_step): the training forward convolves with
        # the real latent weights; evaluation always uses the binary weights
        self.real_weights = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.real_weights and self.training:
            return F.conv2d(
                x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
            )
        w = binarize_weight(self.weight, self.cfg.weight_mode, self.ede_t)
        if self.training or self.bias is not None:
            return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)
        # eval: conv with the ±1 signs (exact integer sums in float32), then × the per-channel
        # scale: one rounding, independent of the conv algorithm and batch size, and exactly what
        # the bit-packed path (odh_core.packed) computes
        scale = w.abs().amax(dim=(1, 2, 3))
        signs = torch.where(w >= 0, 1.0, -1.0).to(w.dtype)
        y = F.conv2d(x, signs, None, self.stride, self.padding, self.dilation, self.groups)
        return y * scale.view(1, -1, 1, 1)


def set_ede_progress(model: nn.Module, progress: float) -> float:
    """Set the EDE temperature of every binary op in ``model`` for training progress in [0, 1]."""
    t = ede_t(progress)
    for mod in model.modules():
        if isinstance(mod, BinaryActivation | BinaryConv2d):
            mod.ede_t = t
    return t


def set_real_weights(model: nn.Module, real: bool) -> int:
    """Make every :class:`BinaryConv2d` in ``model`` train with its real latent weights
    (``real``: two-step training's first step) or with binary weights (the default); returns
    how many convolutions were set. Evaluation-mode forwards always use binary weights."""
    n = 0
    for mod in model.modules():
        if isinstance(mod, BinaryConv2d):
            mod.real_weights = bool(real)
            n += 1
    return n


def latent_binary_weights(model: nn.Module) -> list[nn.Parameter]:
    """The latent (real) weights of every :class:`BinaryConv2d` in ``model``."""
    return [mod.weight for mod in model.modules() if isinstance(mod, BinaryConv2d)]


def set_kernels(model: nn.Module, kernels: str) -> nn.Module:
    """Make every binary op in ``model`` use the named estimator implementation
    (:data:`odh_core.binary.KERNELS`: ``fused`` or ``reference``, equal results); returns
    ``model``."""
    check_kernels(kernels)
    for mod in model.modules():
        if isinstance(mod, BinaryActivation | RPReLU):
            mod.kernels = kernels
    return model


def _post_activation(kind: str, channels: int) -> nn.Module:
    if kind == "rprelu":
        return RPReLU(channels)
    if kind == "hardtanh":
        return nn.Hardtanh()
    if kind == "identity":
        return nn.Identity()
    if kind == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown post activation {kind!r}")


def downsample_shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    """Full-precision shortcut: AvgPool2d(stride) (if strided) + 1×1 conv + BN, or identity."""
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    mods: list[nn.Module] = []
    if stride > 1:
        mods.append(nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False))
    mods += [nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)]
    return nn.Sequential(*mods)


class BasicBlock(nn.Module):
    """One 3×3 conv + BN + shortcut (Bi-Real / ReActNet design); binary or full-precision twin."""

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, *, binary: bool, cfg: LayerConfig
    ) -> None:
        super().__init__()
        self.binary = binary
        if binary:
            self.act_in: nn.Module = BinaryActivation(in_ch, cfg)
            self.conv: nn.Conv2d = BinaryConv2d(
                in_ch, out_ch, 3, stride=stride, padding=1, bias=False, cfg=cfg
            )
            self.post = _post_activation(cfg.post_act, out_ch)
            self.bn_act: nn.Module = _post_activation(cfg.bn_act, out_ch)
        else:
            self.act_in = nn.Identity()
            self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
            self.post = nn.PReLU(out_ch) if cfg.post_act == "rprelu" else nn.ReLU()
            self.bn_act = nn.Identity()
        self.bn = nn.BatchNorm2d(out_ch)
        self.shortcut = downsample_shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.bn_act(self.bn(self.conv(self.act_in(x)))) + self.shortcut(x))
