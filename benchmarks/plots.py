"""Benchmark plots with matplotlib (Agg backend, no display): line plots and latency bars.

The science package (``odh_core``) draws nothing; benchmarks turn its numbers into PNGs here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

logger = logging.getLogger(__name__)

Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]
DPI = 100


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never a GUI backend
    import matplotlib.pyplot as plt

    return plt


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
    """Draw ``{label: (xs, ys)}`` as lines with markers and a legend; writes a ``size`` (pixels)
    PNG to ``path`` and returns ``path``."""
    if not series:
        raise ValueError("series is empty: nothing to plot")
    for label, (xs, ys) in series.items():
        if len(xs) != len(ys) or len(xs) == 0:
            raise ValueError(f"series {label!r}: xs and ys must be non-empty and of equal length")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    try:
        for label, (xs, ys) in series.items():
            ax.plot(list(xs), list(ys), marker="o", markersize=3, linewidth=1.5, label=label)
        if log_x:
            ax.set_xscale("log")
        if xlim is not None:
            ax.set_xlim(*xlim)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.grid(True, color="0.9")
        ax.legend(loc="lower left", fontsize="small")
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    logger.info("plot written to %s", path)
    return path


def pr_and_precision_at_n(
    curves: Mapping[str, Mapping[str, Sequence[float]]], prefix: str
) -> list[str]:
    """Write ``<prefix>_pr.png`` and ``<prefix>_precision_at_n.png`` from
    ``{method: odh_core.metrics.precision_recall_curves(...)}``; returns the paths."""
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


def latency_bars(
    rows: Sequence[Mapping[str, Any]], path: str, *, size: tuple[int, int] = (900, 480)
) -> str:
    """Grouped bars of ``p50_ms`` and ``p99_ms`` per configuration row (labelled by its
    ``mode``, ``groups`` and ``batch``); writes a PNG to ``path`` and returns ``path``."""
    if not rows:
        raise ValueError("rows is empty: nothing to plot")
    plt = _pyplot()
    labels = [f"{r['mode']}\ng{r['groups']} b{r['batch']}" for r in rows]
    xs = range(len(rows))
    width = 0.38
    fig, ax = plt.subplots(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    try:
        p50 = ax.bar([x - width / 2 for x in xs], [r["p50_ms"] for r in rows], width, label="p50")
        ax.bar([x + width / 2 for x in xs], [r["p99_ms"] for r in rows], width, label="p99")
        ax.bar_label(p50, fmt="%.1f", fontsize="x-small")
        ax.set_xticks(list(xs), labels, fontsize="small")
        ax.set(
            ylabel="latency (ms)",
            xlabel="configuration (mode, searcher groups, batch)",
            title="Search latency per configuration",
        )
        ax.legend()
        ax.grid(True, axis="y", color="0.9")
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    logger.info("plot written to %s", path)
    return path
