"""Report of ``odh bench encode``: ratios against the targets, encode.md and encode.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

FORMS: tuple[str, ...] = ("fp", "bnn-float", "packed", "lce")
TARGET_PACKED_VS_FP = 3.0
GOAL_PACKED_VS_FP = 5.0
TARGET_JOB_SPEEDUP = 4.0


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    rows = {(r["form"], r["batch"], r["threads"]): r["images_per_s"] for r in result["rows"]}
    out: dict[str, Any] = {}
    for (form, batch, threads), ips in rows.items():
        if form == "packed" and ("fp", batch, threads) in rows:
            out[f"packed_vs_fp_b{batch}_t{threads}"] = round(ips / rows["fp", batch, threads], 2)
            bf = rows.get(("bnn-float", batch, threads))
            out[f"packed_vs_bnn_float_b{batch}_t{threads}"] = round(ips / bf, 2) if bf else None
    key = max((k for k in rows if k[0] == "packed" and k[2] == 1), default=None,
              key=lambda k: k[1])  # fmt: skip
    if key is not None:
        out["packed_vs_popcount_limit"] = round(
            result["popcount"]["images_per_s_limit"] / rows[key], 2
        )
    if "job" in result:
        out["job_speedup"] = result["job"]["speedup"]
    return out


def markdown(r: dict[str, Any]) -> str:
    pc, ra, by = r["popcount"], r["ratios"], r["bytes"]
    lines = ["# Encoding benchmark", "", f"Command: `{r['command']}`", "",
             f"Machine: {json.dumps(r['machine'])}", "",
             "Untrained `resnet_small` (28 px, " f"{r['settings']['n_bits']} bits, layer "
             f"`{r['settings']['layer']}`; BN statistics from real images): speed does not depend "
             "on the weights. One run; every ratio below compares rows of this run. The machine is "
             "shared: 1-minute load average "
             f"{r.get('load_average_start', '?')} at the start, {r.get('load_average_end', '?')} "
             "at the end; with more runnable threads than cores, 2-thread torch rows at small "
             "batches collapse (OpenMP barriers wait on descheduled threads).", "",
             "## Encoder images/s (`Encoder.encode_arrays`, normalised arrays → packed codes)", "",
             "| form | batch | threads | images/s | ms/image |",
             "|---|---:|---:|---:|---:|"]  # fmt: skip
    for row in r["rows"]:
        lines.append(f"| {row['form']} | {row['batch']} | {row['threads']} | "
                     f"{row['images_per_s']:,.0f} | {row['ms_per_image']:.3f} |")  # fmt: skip
    lines += ["", f"`lce`: not measured. {r['lce']['reason']}.", "",
              f"Codes of the packed and float paths on {r['codes_identical']['images']} real "
              f"images identical: **{r['codes_identical']['identical']}**.", "",
              "## Popcount limit", "",
              f"Network binary MACs per image: {pc['network_binary_macs']:,}. One thread XORs, "
              f"popcounts and adds {pc['words_per_s'] / 1e9:.2f} G uint64 words/s from L1 "
              f"({pc['binary_macs_per_s'] / 1e9:.0f} G binary MACs/s; ISA: "
              f"{', '.join(pc['isa']) or 'no popcount flags'}), so one core cannot exceed "
              f"**{pc['images_per_s_limit']:,.0f} images/s** on the binary convolutions alone.",
              "", "## Ratios", "", "| ratio | value |", "|---|---:|"]  # fmt: skip
    lines += [f"| {k} | {v} |" for k, v in ra.items()]
    b256 = ra.get("packed_vs_fp_b256_t1")
    if b256 is not None:
        verdict = "met" if b256 >= TARGET_PACKED_VS_FP else "MISSED"
        goal = "met" if b256 >= GOAL_PACKED_VS_FP else "missed"
        lines += ["", f"Target packed ≥ {TARGET_PACKED_VS_FP}× FP twin (batch 256, 1 thread): "
                  f"{b256}× — {verdict} (goal {GOAL_PACKED_VS_FP}×: {goal}; popcount limit "
                  f"{ra.get('packed_vs_popcount_limit')}× above the packed path)."]  # fmt: skip
    if "job" in r:
        j = r["job"]
        verdict = "met" if j["speedup"] >= TARGET_JOB_SPEEDUP else "MISSED"
        lines += ["", "## The `odh encode` job", "",
                  f"{j['images']:,} Fashion-MNIST images (PNG), Ray Data, 1 encoder actor "
                  "(1 CPU, 1 thread), batch 256, as `make demo` runs it.", "",
                  "| path | seconds | images/s |", "|---|---:|---:|",
                  f"| before (float) | {j['before']['seconds']} | {j['images_per_s_before']:,} |",
                  f"| after (packed) | {j['after']['seconds']} | {j['images_per_s_after']:,} |",
                  "", f"Speed-up {j['speedup']}× (target ≥ {TARGET_JOB_SPEEDUP}×: {verdict}); "
                  f"codes identical: {j['codes_identical']}."]  # fmt: skip
        if "breakdown" in j:
            lines += ["", "Where the time goes (in-process, one thread, seconds for "
                      f"{j['breakdown']['float']['images']:,} images):", "",
                      "| path | decode | encode | write | images/s |",
                      "|---|---:|---:|---:|---:|"]  # fmt: skip
            for path, b in j["breakdown"].items():
                lines.append(f"| {path} | {b['decode_s']} | {b['encode_s']} | {b['write_s']} | "
                             f"{b['images_per_s']:,} |")  # fmt: skip
    if "profile" in r:
        from benchmarks.encode_profile import profile_markdown

        lines += ["", "## Where the packed path's time goes", "", *profile_markdown(r["profile"])]
    lines += ["", "## Model bytes", "", "| form | bytes |", "|---|---:|"]
    lines += [f"| {k} | {v:,} |" for k, v in by.items()]
    lines += ["", "![images/s](encode.png)", ""]
    return "\n".join(lines)


def plot_png(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = sorted({r["threads"] for r in rows})
    fig, axes = plt.subplots(1, len(threads), figsize=(5 * len(threads), 3.5), squeeze=False)
    for ax, t in zip(axes[0], threads, strict=True):
        batches = sorted({r["batch"] for r in rows if r["threads"] == t})
        forms = [f for f in FORMS if any(r["form"] == f for r in rows)]
        for i, form in enumerate(forms):
            ys = [next((r["images_per_s"] for r in rows if (r["form"], r["batch"], r["threads"])
                        == (form, b, t)), 0) for b in batches]  # fmt: skip
            ax.bar(np.arange(len(batches)) + i * 0.8 / len(forms), ys, 0.8 / len(forms), label=form)
        ax.set_xticks(np.arange(len(batches)) + 0.4 - 0.4 / len(forms), [str(b) for b in batches])
        ax.set_xlabel("batch")
        ax.set_ylabel("images/s")
        ax.set_title(f"{t} thread(s)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
