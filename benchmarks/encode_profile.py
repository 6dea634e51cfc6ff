"""Per-layer CPU time of the bit-packed network (``odh bench encode`` section "profile").

Each kernel runs alone on the inputs it sees in a real forward pass, in several variants, so
the time of one block splits into: the popcount convolution with its BatchNorm (``conv``), the
post activation (``post``), the shortcut (``shortcut``) and packing the next block's input signs
in the same pass (``pack_next``). ``pack_alone`` is a separate :func:`pack_signs` pass over the
block's input, for comparison. Times are CPU seconds of this process (``time.process_time``, one
thread), the minimum of the repeats, scaled to ms per ``batch`` images: on a shared machine CPU
time is less disturbed than wall time by other processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


def _cpu_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return 1000.0 * best


def profile_packed(model: Any, arrays: np.ndarray, batch: int = 256, repeats: int = 5) -> dict:
    """ms per ``batch`` images of each part of :class:`~odh_core.packed.PackedNet` (one thread)."""
    import numba
    import torch

    from odh_core.packed import PackedNet
    from odh_core.packed import kernels as K
    from odh_core.packing import pack_bits

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    net = PackedNet.from_model(model)
    if net._stem_arrays is None or not net.fp_in_kernels:
        return {"skipped": "stem or shortcuts run as torch modules here"}
    chunk = net.chunk
    x = torch.from_numpy(np.ascontiguousarray(arrays[:chunk], dtype=np.float32))
    scale = batch / x.shape[0]
    no_beta = np.zeros(0, np.float32)
    no_bits = np.zeros((0, 0, 0, 0), np.uint32)
    no_sc = np.zeros((0, 0, 0, 0), np.float32)
    wt, alpha, bias = net._stem_arrays
    n, _, h, w = x.shape
    xn = x.numpy()
    first = net.blocks[0].sign_shift

    def stem() -> tuple[np.ndarray, np.ndarray]:
        a = np.empty((n, h, w, wt.shape[3]), np.float32)
        bits = K.padded_bits(n, h, w, wt.shape[3])
        K.stem_conv_bn(xn, wt, alpha, bias, first, a, bits)
        return a, bits

    rows: list[dict[str, Any]] = [{"layer": "stem (conv + BN + pack)",
                                   "ms": _cpu_ms(stem, repeats) * scale}]  # fmt: skip
    a, bits = stem()
    for i, b in enumerate(net.blocks):
        nxt = net.blocks[i + 1].sign_shift if i + 1 < len(net.blocks) else None
        oh, ow = b.out_size(a.shape[1], a.shape[2])
        out = np.empty((n, oh, ow, b.out_channels), np.float32)
        obits = K.padded_bits(n, oh, ow, b.out_channels) if nxt is not None else no_bits
        sc_mode = K.SHORTCUT_DOWNSAMPLE if b.sc_w.size else b.sc_mode

        def run(sc: int, post: int, pack: bool, a: np.ndarray = a, bits: np.ndarray = bits,
                b: Any = b, out: np.ndarray = out, obits: np.ndarray = obits,
                nxt: np.ndarray | None = nxt) -> None:  # fmt: skip
            K.binary_conv(
                bits, a, b.weight_words, b.corr, b.scale, b.alpha, b.bias, b.stride, sc, no_sc,
                b.sc_w, b.sc_alpha, b.sc_bias, post, b.p_in, b.p_slope, b.p_out,
                nxt if pack and nxt is not None else no_beta, out,
                obits if pack and nxt is not None else no_bits,
            )  # fmt: skip

        conv = _cpu_ms(lambda run=run: run(0, 0, False), repeats)
        post = _cpu_ms(lambda run=run, b=b: run(0, b.post_mode, False), repeats)
        short = _cpu_ms(lambda run=run, b=b, s=sc_mode: run(s, b.post_mode, False), repeats)
        full = _cpu_ms(lambda run=run, b=b, s=sc_mode: run(s, b.post_mode, True), repeats)
        alone = _cpu_ms(
            lambda a=a, b=b: K.pack_signs(a, b.sign_shift, K.padded_bits(*a.shape)), repeats
        )
        rows.append({
            "layer": f"block {i} ({b.in_channels}→{b.out_channels}, stride {b.stride}, "
                     f"{a.shape[1]}×{a.shape[2]} px)",
            "conv_ms": conv * scale, "post_ms": max(post - conv, 0.0) * scale,
            "shortcut_ms": max(short - post, 0.0) * scale,
            "pack_next_ms": max(full - short, 0.0) * scale, "ms": full * scale,
            "pack_alone_ms": alone * scale,
        })  # fmt: skip
        a, bits = b.run(a, bits, nxt)
    xb = torch.from_numpy(np.ascontiguousarray(arrays[:batch], dtype=np.float32))
    feats = np.concatenate([a] * int(np.ceil(batch / n)))[:batch]

    def head() -> None:
        with torch.inference_mode():
            f = torch.from_numpy(feats).permute(0, 3, 1, 2).contiguous()
            u = net.head(torch.flatten(net.pool(f), 1)).numpy()
        pack_bits(u >= 0)

    rows.append({"layer": "pool + hash head + pack codes (torch)", "ms": _cpu_ms(head, repeats)})
    total = _cpu_ms(lambda: pack_bits(net(xb) >= 0), repeats) * batch / xb.shape[0]
    parts = sum(r["ms"] for r in rows)
    for r in rows:
        for k, v in list(r.items()):
            if k.endswith("ms"):
                r[k] = round(v, 2)
    return {
        "batch": batch,
        "chunk": chunk,
        "rows": rows,
        "total_ms": round(total, 2),
        "sum_of_parts_ms": round(parts, 2),
        "images_per_cpu_s": round(batch / total * 1000),
    }


def profile_markdown(p: dict[str, Any]) -> list[str]:
    """The profile as markdown lines."""
    if "rows" not in p:
        return [f"Profile skipped: {p.get('skipped')}."]
    lines = [f"CPU ms per {p['batch']} images (one thread; kernels run on chunks of "
             f"{p['chunk']} images; minimum of the repeats):", "",
             "| part | conv + BN | post | shortcut | pack next | total | pack alone |",
             "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in p["rows"]:
        cells = [r.get(k) for k in ("conv_ms", "post_ms", "shortcut_ms", "pack_next_ms")]
        cells_s = ["" if c is None else f"{c:.2f}" for c in cells]
        alone = "" if r.get("pack_alone_ms") is None else f"{r['pack_alone_ms']:.2f}"
        lines.append(f"| {r['layer']} | {' | '.join(cells_s)} | {r['ms']:.2f} | {alone} |")
    lines += ["", f"Whole forward (`PackedNet` + code packing): {p['total_ms']:.2f} ms "
              f"({p['images_per_cpu_s']:,} images per CPU second); sum of the parts "
              f"{p['sum_of_parts_ms']:.2f} ms."]  # fmt: skip
    return lines
