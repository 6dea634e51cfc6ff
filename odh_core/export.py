"""Deployable export with bit-packed binary weights, and a loader that runs from it.

Each ``BinaryConv2d`` is stored as its binarised weight ``sign(W)·s`` split into packed sign bits
(``uint8[out, ceil(in·kh·kw / 8)]``, ``np.packbits(bitorder="little")``, bit 1 ⇔ +1) and one
float32 scale per output channel. Everything else the codes need (stem, shortcuts, BN, RSign/RPReLU
shifts, hash head) stays full precision; the warm-up classifier and BN step counters, which no code
depends on, are left out (``odh-packed-v2``; v1 files with them still load). The loader rebuilds
``conv(x, signs)·s`` exactly as the training model computes it in eval mode, so codes (and outputs)
are bit-identical; :class:`~odh_core.encoder.Encoder` runs it through the bit-packed kernels of
:mod:`odh_core.packed` on CPU (the sign bits and scales are all that path needs).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from odh_core.checkpoint import CheckpointError, EncoderConfig
from odh_core.layers import BinaryConv2d

logger = logging.getLogger(__name__)

PACKED_FILE = "packed.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "odh-packed-v2"
_BITS, _SCALE = ".weight_bits", ".weight_scale"
_NOT_EXPORTED = ("classifier.", "classifier_bn.")


class PackedBinaryConv2d(nn.Module):
    """Inference-only binary conv unpacked once from sign bits + per-channel scales.

    ``forward`` is ``conv2d(x, signs)·scale``, the same float32 operations as
    :class:`~odh_core.layers.BinaryConv2d` in eval mode.
    """

    def __init__(self, conv: nn.Conv2d, bits: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups
        self.shape = tuple(conv.weight.shape)
        n_per_out = int(np.prod(self.shape[1:]))
        unpacked = np.unpackbits(bits.numpy(), axis=1, count=n_per_out, bitorder="little")
        signs = torch.from_numpy(unpacked.astype(np.float32) * 2 - 1).view(self.shape)
        self.register_buffer("signs", signs)
        self.register_buffer("scale", scale.float().reshape(-1).clone())

    @property
    def weight(self) -> torch.Tensor:
        """The binarised weight ``±scale``."""
        return self.signs * self.scale.view(-1, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.signs, None, self.stride, self.padding, self.dilation, self.groups)
        return y * self.scale.view(1, -1, 1, 1)


def _binary_convs(model: nn.Module) -> dict[str, BinaryConv2d]:
    return {n: m for n, m in model.named_modules() if isinstance(m, BinaryConv2d)}


def pack_binary_weight(conv: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """(packed sign bits ``uint8[out, ⌈n/8⌉]``, scales ``float32[out]``) of a binary conv."""
    from odh_core.packed import PackedUnsupportedError, binary_weight_signs

    try:
        signs, scale = binary_weight_signs(conv)
    except PackedUnsupportedError as exc:
        raise ValueError(str(exc)) from exc
    bits = np.packbits(signs.reshape(signs.shape[0], -1), axis=1, bitorder="little")
    return bits, scale


def _exported(key: str, skip: set[str]) -> bool:
    return key not in skip and not key.startswith(_NOT_EXPORTED)


def export_packed(model: nn.Module, config: EncoderConfig, path: str) -> dict[str, Any]:
    """Write ``packed.safetensors`` + ``config.json`` to directory ``path``; returns byte counts."""
    from safetensors.torch import save

    module = getattr(model, "module", model)
    convs = _binary_convs(module)
    skip = {f"{n}.weight" for n in convs}
    skip |= {k for k in module.state_dict() if k.endswith(".num_batches_tracked")}
    tensors: dict[str, torch.Tensor] = {
        k: v.detach().cpu().contiguous()
        for k, v in module.state_dict().items()
        if _exported(k, skip)
    }
    binary_bytes = 0
    for name, conv in convs.items():
        bits, scale = pack_binary_weight(conv)
        tensors[name + _BITS] = torch.from_numpy(bits)
        tensors[name + _SCALE] = torch.from_numpy(scale)
        binary_bytes += bits.nbytes
    blob = save(tensors, metadata={"format": FORMAT})
    cfg_bytes = config.to_json().encode()
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, PACKED_FILE), "wb") as fh:
        fh.write(blob)
    with open(os.path.join(path, CONFIG_FILE), "wb") as fh:
        fh.write(cfg_bytes)
    info = {
        "file_bytes": len(blob),
        "binary_weight_bytes": int(binary_bytes),
        "fp_bytes": int(
            sum(t.numel() * t.element_size() for k, t in tensors.items() if not k.endswith(_BITS))
        ),
        "binary_layers": len(convs),
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    logger.info("packed export %s: %s", path, info)
    return info


def load_packed(path: str, device: str = "cpu") -> tuple[nn.Module, EncoderConfig]:
    """Rebuild an eval-mode encoder from a packed export (binary convs run from the bits)."""
    from safetensors.torch import load

    from odh_core.models import create_encoder

    for name in (PACKED_FILE, CONFIG_FILE):
        if not os.path.isfile(os.path.join(path, name)):
            raise CheckpointError(f"packed export file missing: {os.path.join(path, name)}")
    with open(os.path.join(path, CONFIG_FILE)) as fh:
        config = EncoderConfig.from_dict(json.load(fh))
    with open(os.path.join(path, PACKED_FILE), "rb") as fh:
        tensors = load(fh.read())
    model = create_encoder(
        config.name,
        n_bits=config.n_bits,
        binary=config.binary,
        layer=config.layer,
        n_classes=config.n_classes if "classifier.weight" in tensors else None,
        in_channels=config.channels,
    )
    convs = _binary_convs(model)
    fp_state = {k: v for k, v in tensors.items() if not k.endswith((_BITS, _SCALE))}
    missing, unexpected = model.load_state_dict(fp_state, strict=False)
    expected_missing = {f"{n}.weight" for n in convs}
    optional = {k for k in missing if k.endswith(".num_batches_tracked")}
    if set(missing) - optional != expected_missing or unexpected:
        raise CheckpointError(
            f"{path}: packed tensors do not match {config.name} "
            f"(missing {sorted(set(missing) - expected_missing)}, unexpected {unexpected})"
        )
    for name, conv in convs.items():
        if name + _BITS not in tensors or name + _SCALE not in tensors:
            raise CheckpointError(f"{path}: no packed weight for binary layer {name}")
        packed = PackedBinaryConv2d(conv, tensors[name + _BITS], tensors[name + _SCALE])
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, packed)
    model.to(torch.device(device)).eval()
    return model, config
