"""Report of the quality benchmark: backbone stats, mean ± std table, targets, markdown, plots."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import statistics
import tempfile
from typing import Any

from benchmarks._quality_grid import PROTOCOL
from benchmarks._quality_paired import (
    is_baseline,
    odh_target_lines,
    paired_markdown,
    variant_markdown,
)

logger = logging.getLogger("odh.bench.quality")


def backbone_stats() -> dict[str, Any]:
    """model_stats (+ actual packed export size) of the binary backbones at their input size."""
    from odh_core.models import create_encoder, default_input_size, model_stats

    out: dict[str, Any] = {}
    for name, ch in (("resnet_small", 1), ("resnet_small_wide", 1), ("resnet18", 3)):
        model = create_encoder(name, n_bits=64, in_channels=ch)
        stats = model_stats(model, default_input_size(name), in_channels=ch)
        try:
            from odh_core.checkpoint import EncoderConfig
            from odh_core.export import export_packed

            with tempfile.TemporaryDirectory() as tmp:
                cfg = EncoderConfig(
                    name=name,
                    n_bits=64,
                    channels=ch,
                    mean=(0.5,) * ch,
                    std=(0.5,) * ch,
                    image_size=default_input_size(name),
                )
                stats["packed_file_bytes"] = export_packed(model, cfg, tmp)["file_bytes"]
        except ImportError:  # safetensors missing on a bare GPU box
            pass
        out[name] = stats
    return out


def _group_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (
        r["backbone"],
        r["label"],
        r["variant"],
        r["layer"],
        r["n_bits"],
        r["device"],
        tuple(r.get("epochs_detail", ())),
    )


def _ms(vals: list[float]) -> str:
    if len(vals) == 1:
        return f"{vals[0]:.4f}"
    return f"{statistics.mean(vals):.4f} ± {statistics.stdev(vals):.4f}"


def _targets(runs: list[dict[str, Any]], setting: str) -> list[str]:
    def mean_of(label: str, variant: str = "default") -> float | None:
        v = [
            r["metrics"]["map_all_tie_aware"]
            for r in runs
            if r["label"] == label and r["variant"] == variant and r["n_bits"] == 64
        ]
        return statistics.mean(v) if v else None

    odh, csq, fp = mean_of("ODH-BNN"), mean_of("CSQ-BNN"), mean_of("CSQ-FP")
    lines = [f"Targets ({setting}; 64 bits, tie-aware mAP@ALL, mean over seeds):", ""]
    if odh is None or csq is None:
        lines.append("- ODH-BNN ≥ CSQ-BNN + 0.02: **not measured** (a run is missing)")
    else:
        ok = "MET" if odh >= csq + 0.02 else "MISSED"
        lines.append(f"- ODH-BNN ≥ CSQ-BNN + 0.02: **{ok}** ({odh:.4f} vs {csq:.4f} + 0.02)")
    if odh is None or fp is None:
        lines.append("- ODH-BNN ≥ 0.95 × CSQ-FP: **not measured** (a run is missing)")
    else:
        ok = "MET" if odh >= 0.95 * fp else "MISSED"
        lines.append(f"- ODH-BNN ≥ 0.95 × CSQ-FP: **{ok}** ({odh:.4f} vs 0.95 × {fp:.4f})")
    return lines


def _slug(value: object) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(value).lower()).strip("-") or "x"


def _curve_key(r: dict[str, Any]) -> tuple[Any, ...]:
    """The full run configuration of a record, seed excluded (runs of one key are averaged)."""
    return (
        r["method"],
        r["label"],
        r.get("variant", "default"),
        r["backbone"],
        r["layer"],
        r["n_bits"],
        tuple(r.get("epochs_detail", ())) or r["epochs"],
        r["device"],
        r.get("config_key", ""),
    )


def _figure_key(r: dict[str, Any]) -> str:
    epochs = "-".join(str(e) for e in r.get("epochs_detail", ())) or str(r["epochs"])
    return "-".join(
        _slug(v) for v in (r["backbone"], f"{r['n_bits']}bits", f"e{epochs}", r["device"])
    )


def mean_curves(curves: list[dict[str, Any]]) -> dict[str, Any]:
    """The element-wise mean of ``precision_recall_curves`` results over seeds."""
    first = curves[0]
    for c in curves[1:]:
        if c["radius"] != first["radius"] or c["top_n"] != first["top_n"]:
            raise ValueError("curves of one configuration must share radius and top_n")
    out: dict[str, Any] = {"radius": list(first["radius"]), "top_n": list(first["top_n"])}
    for field in ("precision", "recall", "precision_at_n"):
        columns = zip(*(c[field] for c in curves), strict=True)
        out[field] = [statistics.fmean(vals) for vals in columns]
    return out


def curve_figures(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{figure: {curve label: seed-averaged curves}}``: a figure per backbone × K × schedule ×
    device (BNN layers and full-precision twins side by side), a curve per full run
    configuration — no run replaces another's curve."""
    by_config: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in runs:
        if r.get("curves"):
            by_config.setdefault(_curve_key(r), []).append(r)
    figures: dict[str, dict[str, dict[str, Any]]] = {}
    labels_seen: dict[tuple[str, str], int] = {}
    for rs in by_config.values():
        fig = _figure_key(rs[0])
        base = f"{rs[0]['label']} {rs[0].get('variant', 'default')} {rs[0]['layer']}"
        labels_seen[(fig, base)] = labels_seen.get((fig, base), 0) + 1
    for key, rs in sorted(by_config.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        fig = _figure_key(rs[0])
        label = f"{rs[0]['label']} {rs[0].get('variant', 'default')} {rs[0]['layer']}"
        if labels_seen[(fig, label)] > 1:  # same label, other configuration: tell them apart
            digest = hashlib.sha256(str(key).encode()).hexdigest()[:6]
            label = f"{label} [{digest}]"
        seeds = sorted({int(r["seed"]) for r in rs})
        label += f" ({len(seeds)} seed{'s' if len(seeds) != 1 else ''})"
        figures.setdefault(fig, {})[label] = mean_curves([r["curves"] for r in rs])
    return figures


def write_report(doc: dict[str, Any], out_dir: str, name: str) -> list[str]:
    """``<name>.md`` (+ PR / P@N PNGs when PIL is available) from the collected runs."""
    runs = doc["runs"]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(_group_key(r), []).append(r)
    lines = [
        "# Retrieval quality (`odh bench quality`)",
        "",
        f"Protocol `{PROTOCOL}`: 1,000 test queries (100/class), 5,000 training images "
        "(500/class), database = the other 69,000 (train split included). Metrics on packed "
        "codes by Hamming ranking (`odh_core.metrics`); tie-aware mAP is the primary number. "
        "mean ± std over seeds where several seeds ran. Checkpoints are selected on a validation "
        "split carved from the 5,000 training images, never on the queries. Wall time is per run "
        "(train + encode 70k + evaluate) with `concurrent_runs` runs sharing the device.",
        "",
        "| backbone | method | variant | layer | K | seeds | mAP@ALL tie-aware | mAP@ALL shuffled "
        "| mAP@1000 | mAP@100 | P@H≤2 | epochs | wall s/run | device |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, rs in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        backbone, label, variant, layer, k, device, _ = key
        m = {f: [r["metrics"][f] for r in rs] for f in rs[0]["metrics"]}
        lines.append(
            f"| {backbone} | {label} | {variant} | {layer} | {k} | {len(rs)} | "
            f"{_ms(m['map_all_tie_aware'])} | {_ms(m['map_all_shuffled'])} | "
            f"{_ms(m['map_1000_tie_aware'])} | {_ms(m['map_100_tie_aware'])} | {_ms(m['p_h2'])} | "
            f"{rs[0]['epochs']} {tuple(rs[0].get('epochs_detail', ()))} | "
            f"{statistics.mean(r['wall_s'] for r in rs):.1f} | {device} |"
        )
    lines.append("")
    lines += paired_markdown(runs)
    lines += variant_markdown(runs)
    lines += odh_target_lines(runs)
    settings = sorted(  # those with a default ODH-BNN run (a variant's own backbone is not one)
        {
            (r["backbone"], r["device"], tuple(r.get("epochs_detail", ())))
            for r in runs
            if is_baseline(r)
        }
    )
    for backbone, device, epochs in settings:
        same = [
            r
            for r in runs
            if (r["backbone"], r["device"], tuple(r.get("epochs_detail", ())))
            == (backbone, device, epochs)
        ]
        lines += [*_targets(same, f"{backbone}, {device}, epochs {epochs}"), ""]
    lines += [
        "## Backbones",
        "",
        "| backbone | params | binary params | binary MAC share | "
        "fp32 bytes | packed bytes (estimate) | packed export file bytes |",
        "|---|---|---|---|---|---|---|",
    ]
    for backbone, s in doc.get("backbones", {}).items():
        lines.append(
            f"| {backbone} | {s['params']:,} | {s['binary_params']:,} | "
            f"{s['binary_mac_fraction']:.3f} | {s['fp32_bytes']:,} | {s['packed_bytes']:,} | "
            f"{s.get('packed_file_bytes', 'n/a')} |"
        )
    lines += ["", "## Commands and machines", ""]
    for cmd in sorted({(r["command"], r["device"], r.get("runner", "")) for r in runs}):
        lines.append(f"- `{cmd[0]}` — device {cmd[1]}, runner {cmd[2]}")
    for m in doc.get("machines", []):
        lines.append(f"- machine: `{json.dumps(m, sort_keys=True)}`")
    written = []
    from benchmarks.plots import pr_and_precision_at_n

    figures = curve_figures(runs)
    for setting, curves in sorted(figures.items()):
        written += pr_and_precision_at_n(curves, os.path.join(out_dir, f"{name}-{setting}"))
    if written:
        lines += [
            "",
            "Plots: one figure per backbone × K × schedule × device, one curve per full run "
            "configuration (method, variant, layer and, where runs of one label differ in another "
            "field, a digest of their `config_key`), averaged over its seeds (the legend gives "
            "the count): " + ", ".join(f"`{os.path.basename(p)}`" for p in written),
        ]
    md = os.path.join(out_dir, f"{name}.md")
    with open(md, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return [md, *written]
