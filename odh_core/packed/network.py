"""A hashing ResNet run from bit-packed binary convolutions (CPU inference, identical codes).

``PackedNet.from_model(model)`` takes a binary :class:`~odh_core.models.resnet.HashResNet` (training
form, or the float form loaded from a packed export) and keeps:

* the full-precision stem, global pool and hash head as the model's own torch modules;
* every binary block as packed sign bits + the numbers :func:`~odh_core.packed.kernels.binary_conv`
  needs: RSign shift β, per-channel weight scale, BatchNorm folded to one FMA, the RPReLU /
  hardtanh post activation; a downsample shortcut (AvgPool + 1×1 conv + BN, full precision) stays
  the model's torch module.

Between blocks travel the NHWC float32 activations (read by the shortcuts) and their sign bits,
which the kernel that wrote the activations packs for the next block (``next_beta`` of
:func:`~odh_core.packed.kernels.binary_conv`); images go through in chunks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from odh_core.packed import kernels as K

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 32
_EMPTY = np.zeros(0, dtype=np.float32)
_EMPTY2 = np.zeros((0, 0), dtype=np.float32)
_EMPTY4 = np.zeros((0, 0, 0, 0), dtype=np.float32)
_NO_BITS = np.zeros((0, 0, 0, 0), dtype=np.uint32)


class PackedUnsupportedError(ValueError):
    """The model has a part the packed path does not run (it must use the float path)."""


def _kernel(fn: Any, *args: Any) -> None:
    """Run a parallel numba kernel. Its OpenMP pool resets the process-wide OpenMP thread count
    that torch also reads; restore torch's, whose CPU kernels sum in a thread-dependent order."""
    threads = torch.get_num_threads()
    fn(*args)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _pair(v: int | tuple[int, ...]) -> tuple[int, ...]:
    return (v, v) if isinstance(v, int) else tuple(v)


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
        bn_alpha, bn_bias = _bn_affine(block.bn)
        sc_w, sc_alpha, sc_bias = _EMPTY2, _EMPTY, _EMPTY
        beta = _f32(act.shift) if act.shift is not None else _EMPTY
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
                    _pair(pool.kernel_size) == _pair(pool.stride) == (stride, stride)
                    and pool.ceil_mode
                    and not pool.count_include_pad
                    and _pair(pool.padding) == (0, 0)
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
                sc_alpha, sc_bias = _bn_affine(mods[1])
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
        _kernel(K.pack_signs, x, self.sign_shift, bits)
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
        sc, sc_mode = _EMPTY4, self.sc_mode
        if self.shortcut is not None and self.fp_in_kernel and self.sc_w.size:
            sc_mode = K.SHORTCUT_DOWNSAMPLE
        elif self.shortcut is not None:
            # the float model's own shortcut on the same NCHW tensor: identical values
            with torch.inference_mode():
                nchw = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
                sc = np.ascontiguousarray(self.shortcut(nchw).permute(0, 2, 3, 1).numpy())
        _kernel(
            K.binary_conv,
            bits, x, self.weight_words, self.corr, self.scale, self.alpha, self.bias,
            self.stride, sc_mode, sc, self.sc_w, self.sc_alpha, self.sc_bias, self.post_mode,
            self.p_in, self.p_slope, self.p_out,
            _EMPTY if next_beta is None else next_beta, out,
            _NO_BITS if out_bits is None else out_bits,
        )  # fmt: skip
        return out, out_bits

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


def _stem_arrays(stem: nn.Module) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(wt[C, k, k, OC], alpha, bias)`` when the stem is a stride-1 ``k×k`` conv (padding k//2,
    no bias) + BatchNorm2d, which :func:`~odh_core.packed.kernels.stem_conv_bn` runs; else None."""
    mods = list(stem) if isinstance(stem, nn.Sequential) else []
    if len(mods) != 2 or not isinstance(mods[0], nn.Conv2d):
        return None
    conv = mods[0]
    k = conv.kernel_size[0]
    if (
        _pair(conv.kernel_size) != (k, k)
        or k % 2 == 0
        or _pair(conv.stride) != (1, 1)
        or _pair(conv.padding) != (k // 2, k // 2)
        or _pair(conv.dilation) != (1, 1)
        or conv.groups != 1
        or conv.bias is not None
        or not isinstance(mods[1], nn.BatchNorm2d)
    ):
        return None
    wt = np.ascontiguousarray(conv.weight.detach().float().permute(1, 2, 3, 0).numpy())
    alpha, bias = _bn_affine(mods[1])
    return wt, alpha, bias


class PackedNet:
    """Eval-mode hashing network with binary blocks run by the popcount kernel.

    ``__call__(x)`` takes normalised ``float32[n, C, H, W]`` (numpy or torch) and returns the real
    hash outputs ``u`` as ``float32[n, n_bits]`` (bits are ``u >= 0``), bit-identical to the float
    model's eval-mode outputs for the same batch (torch's own head GEMM is batch-dependent in the
    last bit, so the head runs on the whole batch, not per chunk).
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
        self._stem_arrays = _stem_arrays(stem)
        self.fp_in_kernels = True

    def use_fp_kernels(self, enabled: bool) -> None:
        """Run the stem and downsample shortcuts in the numba kernels (True) or as the model's
        torch modules (False: slower, bit-identical by construction)."""
        self.fp_in_kernels = bool(enabled)
        for block in self.blocks:
            block.fp_in_kernel = self.fp_in_kernels

    def verify(self, model: nn.Module, in_channels: int, size: int, n: int = 4) -> bool:
        """Compare with the float model on ``n`` seeded random ``size``-px inputs; on any
        difference run the full-precision parts as torch modules from now on (logged).

        torch's own CPU kernels sum in an order that can depend on the shape and the thread
        count (e.g. a 1×1 conv on a 3×3 map with 1 vs 2 threads), so this is checked where the
        encoder runs: its input size, its threads. Returns whether the kernels matched."""
        if not (self.fp_in_kernels and (self._stem_arrays is not None or any(
            b.sc_w.size for b in self.blocks
        ))):  # fmt: skip
            return True
        x = torch.randn(n, in_channels, size, size, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            ref = model(x).float().numpy()
        if not np.array_equal(self(x), ref):
            logger.warning(
                "packed: the numba stem/shortcut kernels differ from torch here (%d px, %d "
                "threads); running those full-precision parts as torch modules",
                size, torch.get_num_threads(),
            )  # fmt: skip
            self.use_fp_kernels(False)
            return False
        return True

    @classmethod
    def from_model(
        cls, model: nn.Module, *, chunk: int = DEFAULT_CHUNK, verify_size: int | None = 28
    ) -> PackedNet:
        """Pack a binary HashResNet (put in eval mode); raises :class:`PackedUnsupportedError`
        naming the part it cannot run. ``verify_size`` (None: skip) checks the full-precision
        kernels against the model at that input size (:meth:`verify`)."""
        module = getattr(model, "module", model)
        reason = None if getattr(module, "binary", False) else "full-precision model"
        if reason:
            raise PackedUnsupportedError(reason)
        module.eval()
        blocks = [PackedBlock.from_block(b) for b in module.body]
        cpu = torch.device("cpu")
        stem = module.stem.to(cpu)
        net = cls(stem, blocks, module.pool.to(cpu), module.hash_head.to(cpu),
                  n_bits=int(module.n_bits), chunk=chunk)  # fmt: skip
        if verify_size is not None:
            net.verify(module.to(cpu), in_channels=int(stem[0].in_channels), size=verify_size)
        return net

    def features_nhwc(self, x: torch.Tensor) -> np.ndarray:
        """Stem then the packed blocks: NHWC float32 features.

        Each kernel packs the next block's input sign bits while it writes its output, so no
        block re-reads its float input to pack it (the float input is read by shortcuts only)."""
        first = self.blocks[0].sign_shift if self.blocks else None
        bits = None
        if self._stem_arrays is not None and self.fp_in_kernels:
            wt, alpha, bias = self._stem_arrays
            xn = np.ascontiguousarray(x.numpy(), dtype=np.float32)
            n, _, h, w = xn.shape
            a = np.empty((n, h, w, wt.shape[3]), np.float32)
            if first is not None:
                bits = K.padded_bits(n, h, w, wt.shape[3])
            _kernel(K.stem_conv_bn, xn, wt, alpha, bias, _EMPTY if first is None else first,
                    a, _NO_BITS if bits is None else bits)  # fmt: skip
        else:
            with torch.inference_mode():
                s = self.stem(x)
            a = np.ascontiguousarray(s.permute(0, 2, 3, 1).numpy(), dtype=np.float32)
            if first is not None:
                bits = K.padded_bits(*a.shape)
                _kernel(K.pack_signs, a, first, bits)
        for i, block in enumerate(self.blocks):
            nxt = self.blocks[i + 1].sign_shift if i + 1 < len(self.blocks) else None
            assert bits is not None
            a, bits = block.run(a, bits, nxt)
        return a

    def __call__(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        t = torch.as_tensor(x, dtype=torch.float32)
        if t.ndim != 4:
            raise ValueError(f"x must be float32[n, C, H, W], got shape {tuple(t.shape)}")
        chunks = [
            self.features_nhwc(t[start : start + self.chunk].contiguous())
            for start in range(0, t.shape[0], self.chunk)
        ]
        feats = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        with torch.inference_mode():
            # pool + head once on the whole batch, NCHW contiguous as in the float model: torch's
            # GEMM rounds a row differently depending on the batch it is in, so the head must
            # see the same batch as the float path to give the same bits
            f = torch.from_numpy(feats).permute(0, 3, 1, 2).contiguous()
            u = self.head(torch.flatten(self.pool(f), 1))
        return np.ascontiguousarray(u.numpy(), dtype=np.float32)

    def nbytes(self) -> dict[str, int]:
        """Runtime bytes: packed binary words, FP arrays of the blocks, stem + head tensors,
        and the border-correction tables (derived from the weights at load time)."""
        per = [b.nbytes() for b in self.blocks]
        torch_fp = sum(_tensor_bytes(self.stem)) + sum(_tensor_bytes(self.head))
        binary = sum(p["binary"] for p in per)
        fp = sum(p["fp"] for p in per) + int(torch_fp)
        corr = sum(p["corr"] for p in per)
        return {"binary": binary, "fp": fp, "corr": corr, "total": binary + fp + corr}
