"""Line plots as PNG with PIL only (no matplotlib): axes, ticks, labels, one line per series."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

logger = logging.getLogger(__name__)

PALETTE = (
    (31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip

Series = dict[str, tuple[Sequence[float], Sequence[float]]]


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-2):
        return f"{v:.0e}"
    return f"{v:g}" if float(v).is_integer() else f"{v:.2f}".rstrip("0")


def line_plot(
    series: Series,
    path: str,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    size: tuple[int, int] = (720, 480),
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
    log_x: bool = False,
) -> str:
    """Draw ``{label: (xs, ys)}`` as lines with markers and a legend; writes a PNG to ``path``."""
    from PIL import Image, ImageDraw, ImageFont

    if not series:
        raise ValueError("series is empty: nothing to plot")
    for label, (xs, ys) in series.items():
        if len(xs) != len(ys) or len(xs) == 0:
            raise ValueError(f"series {label!r}: xs and ys must be non-empty and of equal length")
    tx = (lambda v: math.log10(max(v, 1e-12))) if log_x else (lambda v: float(v))
    all_x = [tx(x) for xs, _ in series.values() for x in xs]
    all_y = [float(y) for _, ys in series.values() for y in ys]
    x0, x1 = (tx(xlim[0]), tx(xlim[1])) if xlim else (min(all_x), max(all_x))
    y0, y1 = ylim if ylim else (min(all_y), max(all_y))
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    w, h = size
    left, right, top, bottom = 70, 20, 40, 60
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()

    def px(x: float, y: float) -> tuple[float, float]:
        return (
            left + (x - x0) / (x1 - x0) * (w - left - right),
            h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom),
        )

    draw.rectangle([left, top, w - right, h - bottom], outline="black")
    for t in _ticks(x0, x1):
        x, _ = px(t, y0)
        draw.line([x, h - bottom, x, h - bottom + 5], fill="black")
        draw.line([x, top, x, h - bottom], fill=(230, 230, 230))
        label = _fmt(10**t) if log_x else _fmt(t)
        draw.text((x - 3 * len(label), h - bottom + 8), label, fill="black", font=font)
    for t in _ticks(y0, y1):
        _, y = px(x0, t)
        draw.line([left - 5, y, left, y], fill="black")
        draw.line([left, y, w - right, y], fill=(230, 230, 230))
        draw.text((left - 10 - 6 * len(_fmt(t)), y - 5), _fmt(t), fill="black", font=font)
    draw.text((w // 2 - 3 * len(title), 12), title, fill="black", font=font)
    draw.text((w // 2 - 3 * len(xlabel), h - 25), xlabel, fill="black", font=font)
    ylab = Image.new("RGB", (8 * len(ylabel) + 4, 14), "white")
    ImageDraw.Draw(ylab).text((2, 1), ylabel, fill="black", font=font)
    rotated = ylab.rotate(90, expand=True)
    img.paste(rotated, (6, top + (h - top - bottom - rotated.height) // 2))
    for i, (xs, ys) in enumerate(series.values()):
        colour = PALETTE[i % len(PALETTE)]
        pts = [px(tx(x), float(y)) for x, y in zip(xs, ys, strict=True)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for x, y in pts:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
    # legend: boxed, in the lower left of the plot area (curves here live in the upper part)
    lx, ly0 = left + 10, h - bottom - 10 - 14 * len(series)
    draw.rectangle([lx - 4, ly0 - 4, lx + 190, h - bottom - 6], fill="white", outline="gray")
    for i, label in enumerate(series):
        ly = ly0 + 14 * i
        draw.line([lx, ly + 5, lx + 20, ly + 5], fill=PALETTE[i % len(PALETTE)], width=3)
        draw.text((lx + 25, ly), label[:26], fill="black", font=font)
    img.save(path, format="PNG")
    logger.info("plot written to %s", path)
    return path


def pr_and_precision_at_n(curves: dict[str, dict[str, list[float]]], prefix: str) -> list[str]:
    """Write ``<prefix>_pr.png`` and ``<prefix>_precision_at_n.png`` from
    ``{method: precision_recall_curves(...)}``; returns the paths."""
    pr = {m: (c["recall"], c["precision"]) for m, c in curves.items()}
    pn = {m: (c["top_n"], c["precision_at_n"]) for m, c in curves.items()}
    return [
        line_plot(
            pr, f"{prefix}_pr.png", title="Precision-recall (Hamming radius 0..K)",
            xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1),
        ),
        line_plot(
            pn, f"{prefix}_precision_at_n.png", title="Precision@N (tie-aware)",
            xlabel="N (log scale)", ylabel="precision", ylim=(0, 1), log_x=True,
        ),
    ]  # fmt: skip
