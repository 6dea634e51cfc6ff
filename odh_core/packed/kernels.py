"""Numba kernels of the bit-packed binary inference path (XNOR/XOR + popcount).

Layouts (all little-endian):

* activations are NHWC float32; a block packs ``sign(x − β)`` per pixel into ``L = ⌈C/32⌉``
  uint32 lanes (bit ``c % 32`` of lane ``c // 32`` is 1 ⇔ ``x − β ≥ 0`` ⇔ +1; pad bits are 0);
* a 3×3 patch is the 9 taps' lanes one after another (tap ``t = 3·ky + kx``), zero-padded to a
  whole number of uint64 words ``KW = ⌈9·L/2⌉``;
* weights are packed the same way per output channel and stored transposed, ``uint64[KW, OC]``,
  so the innermost loop runs over output channels (AVX-512 VPOPCNTQ where the CPU has it).

For an output pixel whose valid taps hold ``n_valid`` channels,
``dot = n_valid − 2·(popcount(patch ⊕ w) − corr)``: taps that fall on the zero padding hold
activation bits 0, so their XOR is the weight's own bits; ``corr[border_class, oc]`` (the weight
popcount of the padded taps, one of 16 border classes) removes them. Padded taps therefore add
exactly 0, as the float model's ``F.conv2d`` on a zero-padded ±1 tensor does. The integer dot is
exact; it is scaled by the per-channel weight scale (one rounding, exactly what the float
model's ``conv2d(x, sign(W))·scale`` gives in eval mode) and finished with the same float32
operations, in the same order, as torch's eval-mode BatchNorm (``fma(y, alpha, beta)``), shortcut
add and RPReLU / hardtanh, so block outputs are bit-identical to the float model's.
"""

from __future__ import annotations

import logging

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

logger = logging.getLogger(__name__)

SHORTCUT_NONE, SHORTCUT_IDENTITY, SHORTCUT_GIVEN, SHORTCUT_DOWNSAMPLE = 0, 1, 2, 3
POST_IDENTITY, POST_RPRELU, POST_HARDTANH = 0, 1, 2


@intrinsic
def popcount64(typingctx, x):  # type: ignore[no-untyped-def]
    """LLVM ``ctpop`` on a uint64 (one POPCNT / VPOPCNTQ lane)."""
    if not isinstance(x, types.Integer):
        return None
    sig = types.int64(types.uint64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.ctpop(args[0])

    return sig, codegen


@intrinsic
def fma32(typingctx, a, b, c):  # type: ignore[no-untyped-def]
    """``a·b + c`` with one rounding (LLVM ``fma.f32``), as torch's vectorised BatchNorm does."""
    if not all(isinstance(t, types.Float) for t in (a, b, c)):
        return None
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.fma(*args)

    return sig, codegen


@njit(cache=True)
def fma32_arrays(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Elementwise single-rounding ``a·b + c`` of float32 arrays."""
    out = np.empty(a.shape[0], dtype=np.float32)
    for i in range(a.shape[0]):
        out[i] = fma32(a[i], b[i], c[i])
    return out


def lanes(channels: int) -> int:
    """uint32 lanes per pixel for ``channels`` sign bits."""
    return (channels + 31) // 32


def patch_words(channels: int) -> int:
    """uint64 words of one packed 3×3 patch."""
    return (9 * lanes(channels) + 1) // 2


def pack_weight_signs(signs: np.ndarray) -> np.ndarray:
    """Weight signs ``bool[OC, C, 3, 3]`` (True ⇔ +1) → kernel layout ``uint64[KW, OC]``."""
    oc, c, kh, kw = signs.shape
    if (kh, kw) != (3, 3):
        raise ValueError(f"only 3×3 binary convolutions are packed, got {kh}×{kw}")
    n_lanes = lanes(c)
    words = patch_words(c)
    taps = np.zeros((oc, 9, n_lanes * 32), dtype=bool)
    taps[:, :, :c] = signs.transpose(0, 2, 3, 1).reshape(oc, 9, c)
    lane_bits = np.packbits(taps.reshape(oc, 9 * n_lanes, 32), axis=2, bitorder="little")
    as32 = np.zeros((oc, 2 * words), dtype=np.uint32)
    as32[:, : 9 * n_lanes] = lane_bits.view("<u4")[..., 0]
    return np.ascontiguousarray(as32.view("<u8").T)


def border_corrections(signs: np.ndarray) -> np.ndarray:
    """``int16[16, OC]``: popcount of the weight bits on the taps a border class pads.

    Class bits: 1 top row padded, 2 bottom row, 4 left column, 8 right column.
    """
    per_tap = signs.reshape(signs.shape[0], signs.shape[1], 9).sum(axis=1).astype(np.int64)
    corr = np.zeros((16, signs.shape[0]), dtype=np.int16)
    for cls in range(16):
        for t in range(9):
            ky, kx = divmod(t, 3)
            padded = (
                (cls & 1 and ky == 0)
                or (cls & 2 and ky == 2)
                or (cls & 4 and kx == 0)
                or (cls & 8 and kx == 2)
            )
            if padded:
                corr[cls] += per_tap[:, t]
    return corr


@njit(cache=True, inline="always")
def _pack_pixel(v: np.ndarray, beta: np.ndarray, bits: np.ndarray, n: int, y: int, x: int) -> None:
    """Sign bits of one pixel's channels ``v`` (``v − beta ≥ 0`` ⇔ 1) into ``bits[n, y, x, :]``.

    Branch-free (a compare, a shift, an OR per channel; LLVM vectorises it), and indexed, not
    sliced: an array view in a per-pixel loop costs atomic reference counting."""
    c_in = v.shape[0]
    for lane in range(bits.shape[3]):
        lo = 32 * lane
        top = min(32, c_in - lo)
        word = np.uint32(0)
        for b in range(top):
            word |= np.uint32(v[lo + b] - beta[lo + b] >= 0) << np.uint32(b)
        bits[n, y, x, lane] = word


@njit(cache=True, parallel=True, fastmath=False)
def pack_signs(x: np.ndarray, beta: np.ndarray, bits: np.ndarray) -> None:
    """NHWC float32 ``x`` → ``bits[n, H + 2, W + 2, L]`` (uint32 lanes of ``sign(x − beta)``,
    ``beta`` of length C; the one-pixel border of ``bits`` must be zero: the 3×3 padding)."""
    n_img, h, w, c_in = x.shape
    for n in prange(n_img):
        v = np.empty(c_in, dtype=np.float32)
        for iy in range(h):
            for ix in range(w):
                for c in range(c_in):
                    v[c] = x[n, iy, ix, c]
                _pack_pixel(v, beta, bits, n, iy + 1, ix + 1)


@njit(cache=True, parallel=True, fastmath=False)
def binary_conv(
    bits: np.ndarray,
    x: np.ndarray,
    wt: np.ndarray,
    corr: np.ndarray,
    scale: np.ndarray,
    alpha: np.ndarray,
    bias: np.ndarray,
    stride: int,
    sc_mode: int,
    sc: np.ndarray,
    sc_w: np.ndarray,
    sc_alpha: np.ndarray,
    sc_bias: np.ndarray,
    post_mode: int,
    p_in: np.ndarray,
    p_slope: np.ndarray,
    p_out: np.ndarray,
    next_beta: np.ndarray,
    out: np.ndarray,
    out_bits: np.ndarray,
) -> None:
    """One binary block from packed input bits, in parallel over images; see :func:`binary_block`.

    ``bits[n, H + 2, W + 2, L]`` are the input's sign bits with a zero border (:func:`pack_signs`
    or the previous block's ``out_bits``); ``x`` (NHWC float32) is the same input, read only by
    the identity / downsample shortcut. Each output pixel is finished in one pass: popcount dot →
    ``fma(dot · scale, alpha, bias)`` → + shortcut → post → ``out`` and, when ``out_bits`` has the
    batch's length, the next block's ``sign(out − next_beta)`` bits (its border stays as given).
    """
    n_img, h_in, w_in, c_in = x.shape
    h_out, w_out, c_out = out.shape[1], out.shape[2], out.shape[3]
    n_lanes = bits.shape[3]
    n_words = wt.shape[0]
    pack_next = out_bits.shape[0] == n_img
    for n in prange(n_img):
        patch32 = np.zeros(2 * n_words, dtype=np.uint32)
        patch = patch32.view(np.uint64)
        acc = np.zeros(c_out, dtype=np.int64)
        vbuf = np.zeros(c_out, dtype=np.float32)
        short = np.zeros(c_out, dtype=np.float32)
        pooled = np.zeros(c_in, dtype=np.float32)
        for oy in range(h_out):
            y0 = oy * stride - 1
            cls_y = (1 if y0 < 0 else 0) + (2 if y0 + 2 >= h_in else 0)
            rows = 3 - (1 if y0 < 0 else 0) - (1 if y0 + 2 >= h_in else 0)
            for ox in range(w_out):
                x0 = ox * stride - 1
                cls = cls_y + (4 if x0 < 0 else 0) + (8 if x0 + 2 >= w_in else 0)
                cols = 3 - (1 if x0 < 0 else 0) - (1 if x0 + 2 >= w_in else 0)
                n_valid = rows * cols * c_in
                # the padded bits hold zeros outside the image: no per-tap bounds checks
                for ky in range(3):
                    for kx in range(3):
                        base = (3 * ky + kx) * n_lanes
                        for lane in range(n_lanes):
                            patch32[base + lane] = bits[n, y0 + 1 + ky, x0 + 1 + kx, lane]
                # the n_words % 4 leading words set the accumulators, then four words per pass
                # (a quarter of the accumulator loads/stores of one word per pass)
                r = n_words % 4
                if r == 0:
                    for oc in range(c_out):
                        acc[oc] = 0
                elif r == 1:
                    p0 = patch[0]
                    for oc in range(c_out):
                        acc[oc] = popcount64(p0 ^ wt[0, oc])
                elif r == 2:
                    p0, p1 = patch[0], patch[1]
                    for oc in range(c_out):
                        acc[oc] = popcount64(p0 ^ wt[0, oc]) + popcount64(p1 ^ wt[1, oc])
                else:
                    p0, p1, p2 = patch[0], patch[1], patch[2]
                    for oc in range(c_out):
                        acc[oc] = (
                            popcount64(p0 ^ wt[0, oc]) + popcount64(p1 ^ wt[1, oc])
                        ) + popcount64(p2 ^ wt[2, oc])
                for k in range(r, n_words, 4):
                    p0, p1, p2, p3 = patch[k], patch[k + 1], patch[k + 2], patch[k + 3]
                    for oc in range(c_out):
                        acc[oc] += (popcount64(p0 ^ wt[k, oc]) + popcount64(p1 ^ wt[k + 1, oc])) + (
                            popcount64(p2 ^ wt[k + 2, oc]) + popcount64(p3 ^ wt[k + 3, oc])
                        )
                for oc in range(c_out):
                    dot = n_valid - 2 * (acc[oc] - corr[cls, oc])
                    vbuf[oc] = fma32(np.float32(dot) * scale[oc], alpha[oc], bias[oc])
                if sc_mode == 1:
                    for oc in range(c_out):
                        vbuf[oc] = vbuf[oc] + x[n, oy, ox, oc]
                elif sc_mode == 2:
                    for oc in range(c_out):
                        vbuf[oc] = vbuf[oc] + sc[n, oy, ox, oc]
                elif sc_mode == 3:
                    ya, xa = oy * stride, ox * stride
                    yb, xb = min(ya + stride, h_in), min(xa + stride, w_in)
                    count = np.float32((yb - ya) * (xb - xa))
                    for c in range(c_in):
                        pooled[c] = 0
                    for iy in range(ya, yb):  # a sequential sum per channel, as torch's
                        for ix in range(xa, xb):
                            for c in range(c_in):
                                pooled[c] = pooled[c] + x[n, iy, ix, c]
                    for c in range(c_in):
                        pooled[c] = pooled[c] / count
                    for oc in range(c_out):
                        short[oc] = 0
                    # eight input channels per pass, chained in order: the same FMA sequence
                    # per output channel, an eighth of the accumulator loads/stores
                    c = 0
                    while c + 8 <= c_in:
                        q0, q1, q2, q3 = pooled[c], pooled[c + 1], pooled[c + 2], pooled[c + 3]
                        q4, q5, q6, q7 = pooled[c + 4], pooled[c + 5], pooled[c + 6], pooled[c + 7]
                        for oc in range(c_out):
                            t = fma32(q0, sc_w[c, oc], short[oc])
                            t = fma32(q1, sc_w[c + 1, oc], t)
                            t = fma32(q2, sc_w[c + 2, oc], t)
                            t = fma32(q3, sc_w[c + 3, oc], t)
                            t = fma32(q4, sc_w[c + 4, oc], t)
                            t = fma32(q5, sc_w[c + 5, oc], t)
                            t = fma32(q6, sc_w[c + 6, oc], t)
                            short[oc] = fma32(q7, sc_w[c + 7, oc], t)
                        c += 8
                    while c < c_in:
                        q0 = pooled[c]
                        for oc in range(c_out):
                            short[oc] = fma32(q0, sc_w[c, oc], short[oc])
                        c += 1
                    for oc in range(c_out):
                        vbuf[oc] = vbuf[oc] + fma32(short[oc], sc_alpha[oc], sc_bias[oc])
                if post_mode == 1:
                    for oc in range(c_out):
                        t = vbuf[oc] - p_in[oc]
                        s = t * p_slope[oc]
                        t = t if t > 0 else s  # a select, not a branch
                        vbuf[oc] = t + p_out[oc]
                elif post_mode == 2:
                    for oc in range(c_out):
                        vbuf[oc] = min(max(vbuf[oc], np.float32(-1)), np.float32(1))
                for oc in range(c_out):
                    out[n, oy, ox, oc] = vbuf[oc]
                if pack_next:
                    _pack_pixel(vbuf, next_beta, out_bits, n, oy + 1, ox + 1)


def padded_bits(n: int, h: int, w: int, channels: int) -> np.ndarray:
    """Zeroed ``uint32[n, h + 2, w + 2, L]``: packed sign bits with the 3×3 zero border."""
    return np.zeros((n, h + 2, w + 2, lanes(channels)), dtype=np.uint32)


def binary_block(
    x: np.ndarray,
    beta: np.ndarray,
    wt: np.ndarray,
    corr: np.ndarray,
    scale: np.ndarray,
    alpha: np.ndarray,
    bias: np.ndarray,
    stride: int,
    sc_mode: int,
    sc: np.ndarray,
    sc_w: np.ndarray,
    sc_alpha: np.ndarray,
    sc_bias: np.ndarray,
    post_mode: int,
    p_in: np.ndarray,
    p_slope: np.ndarray,
    p_out: np.ndarray,
    out: np.ndarray,
) -> None:
    """One binary block on NHWC float32 ``x`` into ``out`` (packs ``x`` then :func:`binary_conv`).

    ``out = post(fma(dot · scale, alpha, bias) + shortcut)``: ``dot`` is the ±1 convolution of
    ``sign(x − beta)`` (``beta`` empty: no shift) with the packed 3×3 weights ``wt`` (padding 1),
    ``scale`` the per-channel weight scale, ``alpha``/``bias`` the eval BatchNorm as torch folds
    it; the shortcut is none (0), ``x`` itself (1), the given NHWC array ``sc`` (2) or computed
    here (3): AvgPool(stride, ceil mode, valid pixels only; a sequential sum ÷ count) + 1×1 conv
    ``sc_w[C, OC]`` (sequential FMA over input channels) + BN ``fma(·, sc_alpha, sc_bias)``, the
    order of torch's CPU kernels; post is identity (0), RPReLU (1: shift ``p_in``, PReLU
    ``p_slope``, shift ``p_out``) or hardtanh (2).
    """
    n, h, w, c = x.shape
    if beta.shape[0] != c:
        beta = np.zeros(c, dtype=np.float32)
    bits = padded_bits(n, h, w, c)
    pack_signs(x, beta, bits)
    binary_conv(
        bits, x, wt, corr, scale, alpha, bias, stride, sc_mode, sc, sc_w, sc_alpha, sc_bias,
        post_mode, p_in, p_slope, p_out, _NO_BETA, out, _NO_BITS,
    )  # fmt: skip


_NO_BETA = np.zeros(0, dtype=np.float32)
_NO_BITS = np.zeros((0, 0, 0, 0), dtype=np.uint32)


@njit(cache=True, parallel=True, fastmath=False)
def stem_conv_bn(
    x: np.ndarray,
    wt: np.ndarray,
    alpha: np.ndarray,
    bias: np.ndarray,
    next_beta: np.ndarray,
    out: np.ndarray,
    out_bits: np.ndarray,
) -> None:
    """Full-precision k×k stem conv (stride 1, zero padding k // 2) + eval BN, NCHW in, NHWC out.

    ``wt[C, k, k, OC]``; each output sums ``fma`` over (input channel, row, column) in that
    order from 0, then ``fma(·, alpha, bias)`` — the order of torch's CPU kernels. When
    ``out_bits`` has the batch's length, the first block's ``sign(out − next_beta)`` bits are
    packed into it (its zero border is left as given).
    """
    n_img, c_in, h, w = x.shape
    k, c_out = wt.shape[1], wt.shape[3]
    pad = k // 2
    pack_next = out_bits.shape[0] == n_img
    for n in prange(n_img):
        acc = np.zeros(c_out, dtype=np.float32)
        for oy in range(h):
            for ox in range(w):
                for oc in range(c_out):
                    acc[oc] = 0
                inner = k == 3 and ox >= 1 and ox + 1 < w  # a whole row of 3 taps in the image
                for c in range(c_in):
                    for ky in range(k):
                        iy = oy - pad + ky
                        if iy < 0 or iy >= h:
                            continue
                        if inner:  # the row's three FMAs chained in order in one pass
                            v0, v1, v2 = x[n, c, iy, ox - 1], x[n, c, iy, ox], x[n, c, iy, ox + 1]
                            for oc in range(c_out):
                                t = fma32(v0, wt[c, ky, 0, oc], acc[oc])
                                t = fma32(v1, wt[c, ky, 1, oc], t)
                                acc[oc] = fma32(v2, wt[c, ky, 2, oc], t)
                            continue
                        for kx in range(k):
                            ix = ox - pad + kx
                            if ix >= 0 and ix < w:
                                v = x[n, c, iy, ix]
                                for oc in range(c_out):
                                    acc[oc] = fma32(v, wt[c, ky, kx, oc], acc[oc])
                for oc in range(c_out):
                    out[n, oy, ox, oc] = fma32(acc[oc], alpha[oc], bias[oc])
                if pack_next:
                    for oc in range(c_out):
                        acc[oc] = out[n, oy, ox, oc]
                    _pack_pixel(acc, next_beta, out_bits, n, oy + 1, ox + 1)
