"""A hashing ResNet run from bit-packed binary convolutions (CPU inference, identical codes).

``PackedNet.from_model(model)`` takes a binary :class:`~odh_core.models.resnet.HashResNet` (training
form, or the float form loaded from a packed export) and keeps:

* the full-precision stem, global pool and hash head as the model's own torch modules;
* every binary block as packed sign bits + the numbers :func:`~odh_core.packed.kernels.binary_block`
  needs: RSign shift β, per-channel weight scale, BatchNorm folded to one FMA, the RPReLU /
  hardtanh post activation; a downsample shortcut (AvgPool + 1×1 conv + BN, full precision) stays
  the model's torch module.

Activations between blocks are NHWC float32; images go through in chunks so they stay in cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from odh_core.packed import kernels as K

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 32
_EMPTY = np.zeros(0, dtype=np.float32)
_EMPTY4 = np.zeros((0, 0, 0, 0), dtype=np.float32)


class PackedUnsupportedError(ValueError):
    """The model has a part the packed path does not run (it must use the float path)."""


def _tensor_bytes(module: nn.Module) -> list[int]:
    """Bytes of a module's parameters and floating-point buffers (what inference reads)."""
    tensors = list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]
    return [t.numel() * t.element_size() for t in tensors]


def _f32(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().float().cpu().reshape(-1).numpy())


def _bn_affine(bn: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """Eval BatchNorm as ``fma(x, alpha, bias)``, float32, folded exactly as torch's CPU kernel
    folds it (``alpha = rsqrt(var + eps)·weight``, ``bias = fma(−mean, alpha, bias)``)."""
    if not isinstance(bn, nn.BatchNorm2d) or bn.running_mean is None or bn.running_var is None:
        raise PackedUnsupportedError(f"expected a BatchNorm2d with running stats, got {bn!r}")
    with torch.no_grad():
        var = bn.running_var.detach().float()
        invstd = torch.rsqrt(var + bn.eps)
        weight = bn.weight.detach().float() if bn.weight is not None else torch.ones_like(invstd)
        shift = bn.bias.detach().float() if bn.bias is not None else torch.zeros_like(invstd)
        alpha = _f32(invstd * weight)
    bias = K.fma32_arrays(-_f32(bn.running_mean), alpha, _f32(shift))
    return alpha, bias


def binary_weight_signs(conv: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """(signs ``bool[OC, C, 3, 3]`` (True ⇔ +1), scale ``float32[OC]``) of a binary 3×3 conv.

    Accepts a training :class:`~odh_core.layers.BinaryConv2d` or the export's
    :class:`~odh_core.export.PackedBinaryConv2d` (whose weight is already ``±scale``).
    """
    from odh_core.binary import binarize_weight
    from odh_core.layers import BinaryConv2d

    with torch.no_grad():
        if isinstance(conv, BinaryConv2d):
            wb = binarize_weight(conv.weight, conv.cfg.weight_mode, conv.ede_t).float()
        elif type(conv).__name__ == "PackedBinaryConv2d":
            wb = conv.weight.float()  # signs · scale
        else:
            raise PackedUnsupportedError(f"not a binary convolution: {type(conv).__name__}")
    if tuple(wb.shape[2:]) != (3, 3):
        raise PackedUnsupportedError(f"binary conv kernel must be 3×3, got {tuple(wb.shape)}")
    if tuple(conv.padding) != (1, 1) or tuple(conv.dilation) != (1, 1) or conv.groups != 1:
        raise PackedUnsupportedError("binary conv must have padding 1, dilation 1, groups 1")
    if conv.stride[0] != conv.stride[1]:
        raise PackedUnsupportedError(f"binary conv stride must be square, got {conv.stride}")
    if getattr(conv, "bias", None) is not None:
        raise PackedUnsupportedError("binary conv with a bias is not supported")
    flat = wb.reshape(wb.shape[0], -1)
    scale = flat.abs().amax(dim=1)
    if not torch.equal(flat.abs(), scale[:, None].expand_as(flat)):
        raise PackedUnsupportedError("binarised weight is not ±scale per output channel")
    return (wb >= 0).cpu().numpy(), scale.cpu().numpy().astype(np.float32)


@dataclass
class PackedBlock:
    """The arrays of one binary block in the kernel's layout."""

    in_channels: int
    out_channels: int
    stride: int
    beta: np.ndarray
    weight_words: np.ndarray  # uint64[KW, OC]
    corr: np.ndarray  # int16[16, OC]
    scale: np.ndarray
    alpha: np.ndarray
    bias: np.ndarray
    sc_mode: int
    shortcut: nn.Module | None  # full-precision torch shortcut (AvgPool + 1×1 conv + BN)
    post_mode: int
    p_in: np.ndarray
    p_slope: np.ndarray
    p_out: np.ndarray

    @classmethod
    def from_block(cls, block: nn.Module) -> PackedBlock:
        from odh_core.layers import BinaryActivation, RPReLU

        act = block.act_in
        if not isinstance(act, BinaryActivation) or act.cfg.act_backward == "none":
            raise PackedUnsupportedError("block activations are not binarised")
        signs, scale = binary_weight_signs(block.conv)
        out_ch, in_ch = signs.shape[:2]
        stride = int(block.conv.stride[0])
        bn_alpha, bn_bias = _bn_affine(block.bn)
        beta = _f32(act.shift) if act.shift is not None else _EMPTY
        shortcut = block.shortcut
        if isinstance(shortcut, nn.Identity):
            if stride != 1 or in_ch != out_ch:
                raise PackedUnsupportedError("identity shortcut on a strided/widening block")
            sc_mode, sc_module = K.SHORTCUT_IDENTITY, None
        else:
            sc_mode, sc_module = K.SHORTCUT_GIVEN, shortcut.eval()
        p_in, p_slope, p_out = _EMPTY, _EMPTY, _EMPTY
        post = block.post
        if isinstance(post, RPReLU):
            post_mode = K.POST_RPRELU
            slope = post.prelu.weight.detach().float().reshape(-1)
            if slope.numel() == 1:
                slope = slope.expand(out_ch)
            p_in, p_slope, p_out = _f32(post.shift_in), _f32(slope), _f32(post.shift_out)
        elif isinstance(post, nn.Hardtanh):
            if (post.min_val, post.max_val) != (-1.0, 1.0):
                raise PackedUnsupportedError(f"hardtanh must clip to [-1, 1], got {post}")
            post_mode = K.POST_HARDTANH
        elif isinstance(post, nn.Identity):
            post_mode = K.POST_IDENTITY
        else:
            raise PackedUnsupportedError(f"unsupported post activation {type(post).__name__}")
        return cls(
            in_channels=in_ch, out_channels=out_ch, stride=stride, beta=beta,
            weight_words=K.pack_weight_signs(signs), corr=K.border_corrections(signs),
            scale=scale, alpha=bn_alpha, bias=bn_bias, sc_mode=sc_mode, shortcut=sc_module,
            post_mode=post_mode, p_in=p_in, p_slope=p_slope, p_out=p_out,
        )  # fmt: skip

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        return (h - 1) // self.stride + 1, (w - 1) // self.stride + 1

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """NHWC float32 in, NHWC float32 out."""
        n, h, w, c = x.shape
        if c != self.in_channels:
            raise ValueError(f"block expects {self.in_channels} channels, got {c}")
        oh, ow = self.out_size(h, w)
        out = np.empty((n, oh, ow, self.out_channels), dtype=np.float32)
        sc = _EMPTY4
        if self.shortcut is not None:
            # the float model's own shortcut on the same NCHW tensor: identical values
            with torch.inference_mode():
                nchw = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
                sc = np.ascontiguousarray(self.shortcut(nchw).permute(0, 2, 3, 1).numpy())
        K.binary_block(
            x, self.beta, self.weight_words, self.corr, self.scale, self.alpha, self.bias,
            self.stride, self.sc_mode, sc, self.post_mode, self.p_in, self.p_slope, self.p_out,
            out,
        )  # fmt: skip
        return out

    def nbytes(self) -> dict[str, int]:
        """Bytes of the packed weight words and of the full-precision per-channel arrays."""
        fp = (self.beta, self.scale, self.alpha, self.bias, self.p_in, self.p_slope, self.p_out)
        sc = 0
        if self.shortcut is not None:
            sc = sum(_tensor_bytes(self.shortcut))
        return {
            "binary": int(self.weight_words.nbytes),
            "fp": int(sum(a.nbytes for a in fp) + sc),
            "corr": int(self.corr.nbytes),
        }


def packed_unsupported_reason(model: nn.Module) -> str | None:
    """None when :class:`PackedNet` can run ``model``; else why not (it then runs in float)."""
    module = getattr(model, "module", model)
    if not getattr(module, "binary", False):
        return "full-precision model (no binary layers)"
    for name in ("stem", "body", "pool", "hash_head"):
        if not hasattr(module, name):
            return f"model has no {name!r} (not a HashResNet)"
    try:
        for block in module.body:
            PackedBlock.from_block(block)
    except PackedUnsupportedError as exc:
        return str(exc)
    return None


class PackedNet:
    """Eval-mode hashing network with binary blocks run by the popcount kernel.

    ``__call__(x)`` takes normalised ``float32[n, C, H, W]`` (numpy or torch) and returns the real
    hash outputs ``u`` as ``float32[n, n_bits]`` (bits are ``u >= 0``), equal in sign to the float
    model's eval-mode outputs.
    """

    def __init__(
        self,
        stem: nn.Module,
        blocks: list[PackedBlock],
        pool: nn.Module,
        head: nn.Module,
        *,
        n_bits: int,
        chunk: int = DEFAULT_CHUNK,
    ) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.stem, self.blocks, self.pool, self.head = stem.eval(), blocks, pool, head.eval()
        self.n_bits = n_bits
        self.chunk = chunk

    @classmethod
    def from_model(cls, model: nn.Module, *, chunk: int = DEFAULT_CHUNK) -> PackedNet:
        """Pack a binary HashResNet; raises :class:`PackedUnsupportedError` naming the part."""
        module = getattr(model, "module", model)
        reason = None if getattr(module, "binary", False) else "full-precision model"
        if reason:
            raise PackedUnsupportedError(reason)
        blocks = [PackedBlock.from_block(b) for b in module.body]
        cpu = torch.device("cpu")
        stem = module.stem.to(cpu)
        return cls(stem, blocks, module.pool.to(cpu), module.hash_head.to(cpu),
                   n_bits=int(module.n_bits), chunk=chunk)  # fmt: skip

    def features_nhwc(self, x: torch.Tensor) -> np.ndarray:
        """Stem (torch, as the float model) then the packed blocks: NHWC float32 features."""
        with torch.inference_mode():
            s = self.stem(x)
        a = np.ascontiguousarray(s.permute(0, 2, 3, 1).numpy(), dtype=np.float32)
        for block in self.blocks:
            a = block(a)
        return a

    def __call__(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        t = torch.as_tensor(x, dtype=torch.float32)
        if t.ndim != 4:
            raise ValueError(f"x must be float32[n, C, H, W], got shape {tuple(t.shape)}")
        out = np.empty((t.shape[0], self.n_bits), dtype=np.float32)
        for start in range(0, t.shape[0], self.chunk):
            feats = self.features_nhwc(t[start : start + self.chunk].contiguous())
            with torch.inference_mode():
                # NCHW contiguous, as in the float model, so the pool sums in the same order
                f = torch.from_numpy(feats).permute(0, 3, 1, 2).contiguous()
                u = self.head(torch.flatten(self.pool(f), 1))
            out[start : start + len(u)] = u.numpy()
        return out

    def nbytes(self) -> dict[str, int]:
        """Runtime bytes: packed binary words, FP arrays of the blocks, stem + head tensors,
        and the border-correction tables (derived from the weights at load time)."""
        per = [b.nbytes() for b in self.blocks]
        torch_fp = sum(_tensor_bytes(self.stem)) + sum(_tensor_bytes(self.head))
        binary = sum(p["binary"] for p in per)
        fp = sum(p["fp"] for p in per) + int(torch_fp)
        corr = sum(p["corr"] for p in per)
        return {"binary": binary, "fp": fp, "corr": corr, "total": binary + fp + corr}
