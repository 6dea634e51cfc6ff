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

import numpy as np
import torch
from torch import nn

from odh_core.packed import kernels as K
from odh_core.packed.block import (
    EMPTY,
    NO_BITS,
    PackedBlock,
    PackedUnsupportedError,
    bn_affine,
    pair,
    run_kernel,
    tensor_bytes,
)

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 32


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
        pair(conv.kernel_size) != (k, k)
        or k % 2 == 0
        or pair(conv.stride) != (1, 1)
        or pair(conv.padding) != (k // 2, k // 2)
        or pair(conv.dilation) != (1, 1)
        or conv.groups != 1
        or conv.bias is not None
        or not isinstance(mods[1], nn.BatchNorm2d)
    ):
        return None
    wt = np.ascontiguousarray(conv.weight.detach().float().permute(1, 2, 3, 0).numpy())
    alpha, bias = bn_affine(mods[1])
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
            run_kernel(K.stem_conv_bn, xn, wt, alpha, bias, EMPTY if first is None else first,
                    a, NO_BITS if bits is None else bits)  # fmt: skip
        else:
            with torch.inference_mode():
                s = self.stem(x)
            a = np.ascontiguousarray(s.permute(0, 2, 3, 1).numpy(), dtype=np.float32)
            if first is not None:
                bits = K.padded_bits(*a.shape)
                run_kernel(K.pack_signs, a, first, bits)
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
        torch_fp = sum(tensor_bytes(self.stem)) + sum(tensor_bytes(self.head))
        binary = sum(p["binary"] for p in per)
        fp = sum(p["fp"] for p in per) + int(torch_fp)
        corr = sum(p["corr"] for p in per)
        return {"binary": binary, "fp": fp, "corr": corr, "total": binary + fp + corr}
