"""Report of ``odh bench train-speed``: the markdown table and the PNG bar chart."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_STAGE_NAMES = {
    "stage0": "warm-up (FP classifier)",
    "stage1": "stage 1",
    "stage2": "stage 2 (2 views)",
}


def markdown(result: dict[str, Any]) -> str:
    """The summary table (median images/s and speed-up over ``before``) and the settings."""
    s = result["settings"]
    lines = [
        "# Training speed (`odh bench train-speed`)",
        "",
        f"Command: `{result['command']}`",
        "",
        f"ODH, `{s['backbone']}` ({s['layer']} BNN and its full-precision twin), "
        f"{s['images']} Fashion-MNIST training images, batch {s['batch_size']}, {s['schedule']}; "
        f"median of {s['repeats']} interleaved repeat(s). images/s = training rows per second of "
        "epoch time (a stage-2 row is two augmented views).",
        "",
        "Forms: " + "; ".join(f"`{k}` = {v}" for k, v in s["forms"].items()),
        "",
        f"Machine: {result['machine'].get('processor')}, {result['machine'].get('cpus')} CPUs, "
        f"torch {result['machine'].get('torch', '?')}; load average {result['load_average_start']}"
        f" at the start, {result['load_average_end']} at the end (shared machine).",
        "",
        "images/s (wall clock) and, in brackets, images per CPU-second of the benchmark "
        "process (steadier on a shared machine); speed-ups are ratios of medians.",
        "",
        "| model | threads | form | all stages img/s | warm-up | stage 1 | stage 2 "
        "| speed-up (all) | speed-up stage 1 | speed-up stage 2 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        ips, cps = r["images_per_s"], r["images_per_cpu_s"]
        sp, spc = r.get("speedup", {}), r.get("speedup_cpu", {})
        cells = [f"{ips[k]:.1f} ({cps[k]:.1f})" for k in ("all", "stage0", "stage1", "stage2")]
        cells += [
            f"{sp.get(k, float('nan')):.2f}× ({spc.get(k, float('nan')):.2f}×)"
            for k in ("all", "stage1", "stage2")
        ]
        lines.append(f"| {r['model']} | {r['threads']} | {r['form']} | " + " | ".join(cells) + " |")
    diffs = [d["abs_diff"] for d in result["loss_agreement"]]
    if diffs:
        lines += [
            "",
            f"Epoch losses of each form against `before` in the same repeat (same seed): largest "
            f"absolute difference {max(diffs):.3g} over {len(diffs)} (model, threads, stage) "
            "pairs (float rounding: channels_last convolutions sum in another order; the fused "
            "estimators are bit-identical, the fused RPReLU's parameter gradients sum in float64).",
        ]
    lines += ["", f"Benchmark time: {result['seconds']} s.", ""]
    return "\n".join(lines)


def plot_png(result: dict[str, Any], path: Path) -> None:
    """Bars: median images per CPU-second (steadier than wall clock on a shared machine) per
    model and thread count, all stages and per stage, one bar per form."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    groups = sorted({(r["model"], r["threads"]) for r in rows})
    forms = list(result["settings"]["forms"])
    width = 0.8 / max(len(forms), 1)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    for ax, stage in zip(axes, ("all", "stage0", "stage1", "stage2"), strict=True):
        for i, form in enumerate(forms):
            values = []
            for g in groups:
                match = [r for r in rows if (r["model"], r["threads"], r["form"]) == (*g, form)]
                values.append(match[0]["images_per_cpu_s"][stage] if match else 0.0)
            xs = [j + i * width for j in range(len(groups))]
            ax.bar(xs, values, width=width, label=form)
        ax.set_xticks([j + width * (len(forms) - 1) / 2 for j in range(len(groups))])
        ax.set_xticklabels([f"{m}\n{t} thr" for m, t in groups])
        ax.set_title("all stages" if stage == "all" else _STAGE_NAMES[stage])
        ax.set_ylabel("training images per CPU-second")
    axes[0].legend()
    fig.suptitle("odh bench train-speed: before (reference ops, NCHW) vs after")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
