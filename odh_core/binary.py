"""Binarisation ops: sign with sign(0) := +1 and straight-through estimators (ALGORITHMS.md §1).

Two implementations of the activation estimators (``KERNELS``), equal bit for bit:

* ``fused`` (default): sign as ``ge → cast → ·2 − 1`` and each backward as a short chain of
  in-place ops on one buffer (e.g. ApproxSign's ``grad · max(0, 2 − 2|x|)``). On CPU these are
  10–15× faster than the ``reference`` ops, whose ``torch.where`` with materialised ones/zeros
  tensors dominated a BNN training step (``odh bench train-speed``).
* ``reference``: the original chains of elementwise ops (``torch.where`` per branch), kept to
  check the fused ops against and to measure the speed-up side by side.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

logger = logging.getLogger(__name__)


#: Implementations of the activation estimators (see the module docstring).
KERNELS = ("fused", "reference")


def check_kernels(kernels: str, name: str = "kernels") -> str:
    """``kernels`` if it names an implementation in :data:`KERNELS`, else ValueError naming
    ``name``."""
    if kernels not in KERNELS:
        raise ValueError(f"{name} must be one of {KERNELS}, got {kernels!r}")
    return kernels


def sign(x: torch.Tensor) -> torch.Tensor:
    """Sign with ``sign(0) = +1`` (values in {−1, +1}, same dtype as ``x``; NaN → −1).

    ``(x >= 0)·2 − 1``: equal to :func:`sign_reference` element for element (−0.0 ↦ +1)."""
    return torch.ge(x, 0).to(x.dtype).mul_(2).sub_(1)


def sign_reference(x: torch.Tensor) -> torch.Tensor:
    """The original :func:`sign` (``torch.where`` over materialised ±1 tensors)."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class SignClipSTE(torch.autograd.Function):
    """Forward sign(x); backward the clipped identity STE ``grad · 1{|x| ≤ 1}``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return torch.le(x.abs(), 1).to(grad.dtype).mul_(grad)


class SignClipSTEReference(torch.autograd.Function):
    """:class:`SignClipSTE` as first written (the ``reference`` kernels)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return sign_reference(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


class ApproxSign(torch.autograd.Function):
    """Forward sign(x); backward Bi-Real ApproxSign: 2+2x on [−1,0), 2−2x on [0,1), else 0.

    Both branches are ``2 − 2|x|`` (exactly: ``2 + 2x = 2 − 2|x|`` for x < 0 in IEEE arithmetic)
    and are ≤ 0 outside (−1, 1), so the slope is ``max(0, 2 − 2|x|)``: four in-place passes over
    one buffer instead of two ``torch.where`` over four temporaries."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return x.abs().mul_(-2).add_(2).clamp_(min=0).mul_(grad)


class ApproxSignReference(torch.autograd.Function):
    """:class:`ApproxSign` as first written (the ``reference`` kernels)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return sign_reference(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        slope = torch.where(x < 0, 2 + 2 * x, 2 - 2 * x)
        slope = torch.where(x.abs() < 1, slope, torch.zeros_like(x))
        return grad * slope


class EDESign(torch.autograd.Function):
    """Forward sign(x); backward IR-Net's EDE ``k·t·(1 − tanh²(t·x))`` with k = max(1/t, 1)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, t: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.t = float(t)
        return sign(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        t = ctx.t
        k = max(1.0 / t, 1.0)
        return grad * (k * t * (1 - torch.tanh(t * x) ** 2)), None


class IdentitySTE(torch.autograd.Function):
    """Forward sign(x); backward passes the gradient unchanged (hash-centre STE)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return sign(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


def ede_t(progress: float, t_min: float = 1e-3, t_max: float = 10.0) -> float:
    """EDE temperature annealed log-uniformly from ``t_min`` to ``t_max`` as progress goes 0 → 1."""
    p = min(max(float(progress), 0.0), 1.0)
    return 10 ** (math.log10(t_min) + p * (math.log10(t_max) - math.log10(t_min)))


def binarize_activation(
    x: torch.Tensor, backward: str, t: float = 1.0, kernels: str = "fused"
) -> torch.Tensor:
    """Binarise activations with the named backward: ``clip``, ``approx`` or ``ede``.

    ``none`` keeps the real activations (only used by the ``xnor_weight_only`` layer that
    reproduces the reference code's weight-only "XNOR" in ``mode="faithful"``). ``kernels``
    picks the implementation (:data:`KERNELS`; equal results).
    """
    if backward == "none":
        return x
    reference = check_kernels(kernels) == "reference"
    if backward == "clip":
        return (SignClipSTEReference if reference else SignClipSTE).apply(x)
    if backward == "approx":
        return (ApproxSignReference if reference else ApproxSign).apply(x)
    if backward == "ede":
        return EDESign.apply(x, t)
    raise ValueError(f"unknown activation backward {backward!r}")


def binarize_weight(w: torch.Tensor, mode: str, t: float = 1.0) -> torch.Tensor:
    """Binarise conv/linear weights ``[out, ...]`` with the named scheme.

    * ``xnor``: sign(W)·α, α = mean|W| per output channel (α keeps its gradient), clipped STE.
    * ``scaled``: sign(W)·mean|W| per output channel with the scale detached, clip(W, −1, 1) STE
      (Bi-Real / ReActNet).
    * ``irnet``: standardise each filter (zero mean, unit std), sign with EDE backward, scale by
      2^round(log2 mean|Ŵ|) (detached).
    """
    dims = tuple(range(1, w.dim()))
    if mode == "xnor":
        alpha = w.abs().mean(dim=dims, keepdim=True)
        return SignClipSTE.apply(w) * alpha
    if mode == "scaled":
        alpha = w.abs().mean(dim=dims, keepdim=True).detach()
        return SignClipSTE.apply(w) * alpha
    if mode == "irnet":
        wc = w - w.mean(dim=dims, keepdim=True)
        ws = wc / (wc.std(dim=dims, keepdim=True) + 1e-8)
        mean_abs = ws.abs().mean(dim=dims, keepdim=True).detach().clamp_min(1e-8)
        scale = torch.pow(2.0, torch.round(torch.log2(mean_abs)))
        return EDESign.apply(ws, t) * scale
    raise ValueError(f"unknown weight binarisation {mode!r}")
