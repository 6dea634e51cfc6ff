"""One binary block of a hashing ResNet in the packed kernels' layout, and the helpers that fold
its torch modules into arrays (sign bits, per-channel scale, BatchNorm as one FMA)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from odh_core.packed import kernels as K

EMPTY = np.zeros(0, dtype=np.float32)
EMPTY2 = np.zeros((0, 0), dtype=np.float32)
EMPTY4 = np.zeros((0, 0, 0, 0), dtype=np.float32)
NO_BITS = np.zeros((0, 0, 0, 0), dtype=np.uint32)


class PackedUnsupportedError(ValueError):
    """The model has a part the packed path does not run (it must use the float path)."""


def run_kernel(fn: Any, *args: Any) -> None:
    """Run a parallel numba kernel. Its OpenMP pool resets the process-wide OpenMP thread count
    that torch also reads; restore torch's, whose CPU kernels sum in a thread-dependent order."""
    threads = torch.get_num_threads()
    fn(*args)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def pair(v: int | tuple[int, ...]) -> tuple[int, ...]:
    return (v, v) if isinstance(v, int) else tuple(v)


def tensor_bytes(module: nn.Module) -> list[int]:
    """Bytes of a module's parameters and floating-point buffers (what inference reads)."""
    tensors = list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]
    return [t.numel() * t.element_size() for t in tensors]


def f32(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().float().cpu().reshape(-1).numpy())


def bn_affine(bn: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """Eval BatchNorm as ``fma(x, alpha, bias)``, float32, folded exactly as torch's CPU kernel
    folds it (``alpha = rsqrt(var + eps)·weight``, ``bias = fma(−mean, alpha, bias)``)."""
    if not isinstance(bn, nn.BatchNorm2d) or bn.running_mean is None or bn.running_var is None:
        raise PackedUnsupportedError(f"expected a BatchNorm2d with running stats, got {bn!r}")
    with torch.no_grad():
        var = bn.running_var.detach().float()
        invstd = torch.rsqrt(var + bn.eps)
        weight = bn.weight.detach().float() if bn.weight is not None else torch.ones_like(invstd)
        shift = bn.bias.detach().float() if bn.bias is not None else torch.zeros_like(invstd)
        alpha = f32(invstd * weight)
    bias = K.fma32_arrays(-f32(bn.running_mean), alpha, f32(shift))
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
    sc_w: np.ndarray  # the same shortcut for the kernel (empty: it cannot run it)
    sc_alpha: np.ndarray
    sc_bias: np.ndarray
    post_mode: int
    p_in: np.ndarray
    p_slope: np.ndarray
    p_out: np.ndarray
    fp_in_kernel: bool = True  # False: run the downsample shortcut as its torch module

    @classmethod
    def from_block(cls, block: nn.Module) -> PackedBlock:
        from odh_core.layers import BinaryActivation, RPReLU

        act = block.act_in
        if not isinstance(act, BinaryActivation) or act.cfg.act_backward == "none":
            raise PackedUnsupportedError("block activations are not binarised")
        if not isinstance(getattr(block, "bn_act", nn.Identity()), nn.Identity):
            raise PackedUnsupportedError("an activation after the block's BatchNorm")
        signs, scale = binary_weight_signs(block.conv)
        out_ch, in_ch = signs.shape[:2]
        stride = int(block.conv.stride[0])
        bn_alpha, bn_bias = bn_affine(block.bn)
        sc_w, sc_alpha, sc_bias = EMPTY2, EMPTY, EMPTY
        beta = f32(act.shift) if act.shift is not None else EMPTY
        shortcut = block.shortcut
        if isinstance(shortcut, nn.Identity):
            if stride != 1 or in_ch != out_ch:
                raise PackedUnsupportedError("identity shortcut on a strided/widening block")
            sc_mode, sc_module = K.SHORTCUT_IDENTITY, None
        else:
            sc_mode, sc_module = K.SHORTCUT_GIVEN, shortcut.eval()
            mods = list(shortcut)
            pool_ok = True
            if mods and isinstance(mods[0], nn.AvgPool2d):
                pool = mods.pop(0)
                pool_ok = (
                    pair(pool.kernel_size) == pair(pool.stride) == (stride, stride)
                    and pool.ceil_mode
                    and not pool.count_include_pad
                    and pair(pool.padding) == (0, 0)
                )
            elif stride != 1:
                pool_ok = False
            if (
                pool_ok
                and len(mods) == 2
                and isinstance(mods[0], nn.Conv2d)
                and tuple(mods[0].kernel_size) == (1, 1)
                and mods[0].bias is None
                and tuple(mods[0].stride) == (1, 1)
                and isinstance(mods[1], nn.BatchNorm2d)
            ):
                sc_w = np.ascontiguousarray(mods[0].weight.detach().float()[:, :, 0, 0].T.numpy())
                sc_alpha, sc_bias = bn_affine(mods[1])
        p_in, p_slope, p_out = EMPTY, EMPTY, EMPTY
        post = block.post
        if isinstance(post, RPReLU):
            post_mode = K.POST_RPRELU
            slope = post.prelu.weight.detach().float().reshape(-1)
            if slope.numel() == 1:
                slope = slope.expand(out_ch)
            p_in, p_slope, p_out = f32(post.shift_in), f32(slope), f32(post.shift_out)
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
            sc_w=sc_w, sc_alpha=sc_alpha, sc_bias=sc_bias,
            post_mode=post_mode, p_in=p_in, p_slope=p_slope, p_out=p_out,
        )  # fmt: skip

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        return (h - 1) // self.stride + 1, (w - 1) // self.stride + 1

    @property
    def sign_shift(self) -> np.ndarray:
        """The RSign shift β over all input channels (zeros when the block has none)."""
        if self.beta.shape[0] == self.in_channels:
            return self.beta
        return np.zeros(self.in_channels, dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """NHWC float32 in, NHWC float32 out."""
        n, h, w, c = x.shape
        if c != self.in_channels:
            raise ValueError(f"block expects {self.in_channels} channels, got {c}")
        bits = K.padded_bits(n, h, w, c)
        run_kernel(K.pack_signs, x, self.sign_shift, bits)
        return self.run(x, bits, None)[0]

    def run(
        self, x: np.ndarray, bits: np.ndarray, next_beta: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """NHWC float32 ``x`` and its packed sign bits (:func:`~odh_core.packed.kernels.pack_signs`
        layout) → (NHWC float32 output, the next block's packed bits of ``sign(out − next_beta)``,
        or None when ``next_beta`` is None), in one pass over the output."""
        n, h, w, c = x.shape
        if c != self.in_channels:
            raise ValueError(f"block expects {self.in_channels} channels, got {c}")
        oh, ow = self.out_size(h, w)
        out = np.empty((n, oh, ow, self.out_channels), dtype=np.float32)
        out_bits = None
        if next_beta is not None:
            out_bits = K.padded_bits(n, oh, ow, self.out_channels)
        sc, sc_mode = EMPTY4, self.sc_mode
        if self.shortcut is not None and self.fp_in_kernel and self.sc_w.size:
            sc_mode = K.SHORTCUT_DOWNSAMPLE
        elif self.shortcut is not None:
            # the float model's own shortcut on the same NCHW tensor: identical values
            with torch.inference_mode():
                nchw = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
                sc = np.ascontiguousarray(self.shortcut(nchw).permute(0, 2, 3, 1).numpy())
        run_kernel(
            K.binary_conv,
            bits, x, self.weight_words, self.corr, self.scale, self.alpha, self.bias,
            self.stride, sc_mode, sc, self.sc_w, self.sc_alpha, self.sc_bias, self.post_mode,
            self.p_in, self.p_slope, self.p_out,
            EMPTY if next_beta is None else next_beta, out,
            NO_BITS if out_bits is None else out_bits,
        )  # fmt: skip
        return out, out_bits

    def nbytes(self) -> dict[str, int]:
        """Bytes of the packed weight words and of the full-precision per-channel arrays."""
        fp = (self.beta, self.scale, self.alpha, self.bias, self.p_in, self.p_slope, self.p_out)
        sc = 0
        if self.shortcut is not None:
            sc = sum(tensor_bytes(self.shortcut))
        return {
            "binary": int(self.weight_words.nbytes),
            "fp": int(sum(a.nbytes for a in fp) + sc),
            "corr": int(self.corr.nbytes),
        }
