"""ReActNet's RPReLU ``prelu(x − β_in; a) + β_out`` as one fused CPU op (numba), forward and
backward, for ``TrainConfig.kernels="fused"``.

The unfused graph (sub, PReLU, add) makes three passes forward and, backward, PyTorch's PReLU
kernel (≈ 14 ms for one ``[128, 32, 28, 28]`` tensor on one core, more than a binary conv's
forward) plus two broadcast reductions. Here one pass computes each direction:

* forward: the unfused graph's own ops (sub, ``torch.prelu``, add — fast already) without
  autograd recording them; ``z = x − β_in`` is saved for the backward;
* backward, one pass: ``∂x = g if z > 0 else a[c]·g`` (bit-identical) and the per-channel sums
  ``∂a = Σ min(z, 0)·g``, ``∂β_out = Σ g``, ``∂β_in = −Σ ∂x``, accumulated in float64 in one
  fixed order (the unfused graph sums in float32 in PyTorch's vectorised order: the parameter
  gradients agree to float32 rounding, not bit for bit; the order here does not depend on the
  thread count).

Used for float32 CPU tensors that are contiguous in NCHW or channels_last; anything else takes
the unfused graph (``odh_core.layers.RPReLU``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from numba import njit

logger = logging.getLogger(__name__)

__all__ = ["can_fuse", "rprelu"]


@njit(cache=True)
def _backward_nchw(
    z: np.ndarray, a: np.ndarray, g: np.ndarray, gx: np.ndarray, sums: np.ndarray
) -> None:  # pragma: no cover - compiled
    """``z``, ``g``, ``gx`` ``[N, C, H·W]``; ``sums`` float64 ``[3, C]`` (∂a, Σg, Σ∂x)."""
    n_outer, n_ch, n_inner = z.shape
    for o in range(n_outer):
        for c in range(n_ch):
            ac = a[c]
            s_a = 0.0
            s_g = 0.0
            s_x = 0.0
            for i in range(n_inner):
                zv = z[o, c, i]
                gv = g[o, c, i]
                if zv > 0:
                    d = gv
                else:
                    d = ac * gv
                    s_a += np.float64(zv) * np.float64(gv)
                gx[o, c, i] = d
                s_g += gv
                s_x += d
            sums[0, c] += s_a
            sums[1, c] += s_g
            sums[2, c] += s_x


@njit(cache=True)
def _backward_nhwc(
    z: np.ndarray,
    a: np.ndarray,
    g: np.ndarray,
    gx: np.ndarray,
    s_a: np.ndarray,
    s_g: np.ndarray,
    s_x: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """``z``, ``g``, ``gx`` ``[N·H·W, C]`` (channels innermost: the loop over c vectorises);
    ``s_a``, ``s_g``, ``s_x`` float64 ``[C]``."""
    n_outer, n_ch = z.shape
    for o in range(n_outer):
        for c in range(n_ch):
            zv = z[o, c]
            gv = g[o, c]
            pos = zv > 0
            d = gv if pos else a[c] * gv
            gx[o, c] = d
            s_a[c] += 0.0 if pos else np.float64(zv) * np.float64(gv)
            s_g[c] += gv
            s_x[c] += d


def _channels_last(x: torch.Tensor) -> bool:
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def can_fuse(x: torch.Tensor) -> bool:
    """Whether :func:`rprelu` takes the fused path for ``x``."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 4
        and (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))
    )


class _RPReLU(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, s_in: torch.Tensor, a: torch.Tensor, s_out: torch.Tensor
    ) -> torch.Tensor:
        # the forward is the unfused graph's own ops (already fast), run without autograd
        z = x - s_in
        ctx.save_for_backward(z, a)
        ctx.shapes = (s_in.shape, a.shape, s_out.shape)
        return torch.prelu(z, a).add_(s_out)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        z, a = ctx.saved_tensors
        n, ch, h, w = z.shape
        gx = torch.empty_like(z)  # z's strides; the gradient is brought to them too
        g = grad if grad.stride() == z.stride() else torch.empty_like(z).copy_(grad)
        av = a.detach().reshape(-1).contiguous().numpy()
        if _channels_last(z):
            views = [t.permute(0, 2, 3, 1).reshape(n * h * w, ch).numpy() for t in (z, g, gx)]
            sums = np.zeros((3, ch), dtype=np.float64)
            _backward_nhwc(views[0], av, views[1], views[2], sums[0], sums[1], sums[2])
        else:
            views = [t.view(n, ch, h * w).numpy() for t in (z, g, gx)]
            sums = np.zeros((3, ch), dtype=np.float64)
            _backward_nchw(views[0], av, views[1], views[2], sums)
        out = torch.from_numpy(sums.astype(np.float32))
        s_in_shape, a_shape, s_out_shape = ctx.shapes
        return gx, (-out[2]).view(s_in_shape), out[0].view(a_shape), out[1].view(s_out_shape)


def rprelu(
    x: torch.Tensor, s_in: torch.Tensor, a: torch.Tensor, s_out: torch.Tensor
) -> torch.Tensor:
    """``prelu(x − s_in; a) + s_out`` fused (``can_fuse(x)`` must hold). ``x`` ``[n, C, H, W]``;
    ``s_in``, ``s_out`` ``[1, C, 1, 1]``; ``a`` ``[C]``."""
    return _RPReLU.apply(x, s_in, a, s_out)
