"""Paired comparisons in the quality benchmark: every method against ODH, and every ODH variant
(ablation) and the full-precision twin against the default ODH-BNN run.

Runs pair when they share the setting (backbone, layer, K, device, schedule) and the seed — the
methods grid gives seed s to every method, so seed s means the same split and initialisation
seed. For each method and setting: the mean of the per-seed differences (method − ODH) of
tie-aware mAP@ALL and its 95% confidence interval mean ± t_{0.975, n−1} · sd / √n.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

# two-sided 95% Student t quantiles t_{0.975, df}, df = 1…30 (beyond: the normal 1.96)
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int) -> float:
    """t_{0.975, df} (df ≥ 1)."""
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def paired_ci(diffs: list[float]) -> tuple[float, float, float] | None:
    """(mean, low, high) of the 95% CI of the mean difference; None with fewer than 2 pairs."""
    if len(diffs) < 2:
        return None
    mean = statistics.mean(diffs)
    half = t975(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


def setting_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (
        r["backbone"],
        r["layer"],
        r["n_bits"],
        r["device"],
        tuple(r.get("epochs_detail", ())),
        r.get("variant", "default"),
    )


def paired_rows(runs: list[dict[str, Any]], metric: str = "map_all_tie_aware") -> list[dict]:
    """One row per (setting, method ≠ odh) with at least one seed paired with an ODH run."""
    by: dict[tuple[Any, ...], dict[str, dict[int, float]]] = {}
    for r in runs:
        if r.get("variant", "default") != "default":
            continue
        seeds = by.setdefault(setting_key(r), {}).setdefault(r["method"], {})
        seeds[int(r["seed"])] = float(r["metrics"][metric])
    rows = []
    for key in sorted(by, key=lambda k: tuple(str(v) for v in k)):
        methods = by[key]
        odh = methods.get("odh")
        if not odh:
            continue
        for method in sorted(methods):
            if method == "odh":
                continue
            common = sorted(set(odh) & set(methods[method]))
            if not common:
                continue
            diffs = [methods[method][s] - odh[s] for s in common]
            rows.append(
                {
                    "backbone": key[0], "layer": key[1], "n_bits": key[2], "device": key[3],
                    "epochs": key[4], "method": method, "seeds": common,
                    "mean": statistics.mean(methods[method][s] for s in common),
                    "odh_mean": statistics.mean(odh[s] for s in common),
                    "diff": statistics.mean(diffs), "ci": paired_ci(diffs),
                }
            )  # fmt: skip
    return rows


def paired_markdown(runs: list[dict[str, Any]]) -> list[str]:
    """The markdown section: method − ODH per setting with the 95% CI."""
    rows = paired_rows(runs)
    if not rows:
        return []
    lines = [
        "## Each method against ODH (paired by seed)",
        "",
        "Tie-aware mAP@ALL; Δ = method − ODH averaged over the seeds both ran (same seed = same "
        "split and initialisation seed); 95% CI = mean Δ ± t(0.975, n−1)·sd/√n (n/a with one "
        "pair). An interval that excludes 0 is a difference the seeds resolve.",
        "",
        "| backbone | layer | K | method | seeds | method mAP | ODH mAP | Δ vs ODH | 95% CI |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ci = "n/a" if r["ci"] is None else f"[{r['ci'][1]:+.4f}, {r['ci'][2]:+.4f}]"
        lines.append(
            f"| {r['backbone']} | {r['layer']} | {r['n_bits']} | {r['method']} | "
            f"{len(r['seeds'])} | {r['mean']:.4f} | {r['odh_mean']:.4f} | {r['diff']:+.4f} | {ci} |"
        )
    return [*lines, ""]


def _base_backbone(r: dict[str, Any]) -> str:
    return str(r.get("base_backbone", r["backbone"]))


def is_baseline(r: dict[str, Any]) -> bool:
    """The default ODH-BNN run of its setting (on the grid's own backbone)."""
    return (
        r["label"] == "ODH-BNN"
        and r.get("variant", "default") == "default"
        and r["backbone"] == _base_backbone(r)
    )


def variant_rows(runs: list[dict[str, Any]], metric: str = "map_all_tie_aware") -> list[dict]:
    """One row per ODH variant (every ``odh`` run whose variant is not ``default``, and the
    full-precision twin ODH-FP) and setting (grid backbone, K, device, schedule) with at least
    one seed paired with the baseline: the default ODH-BNN run of that setting. Δ = variant −
    baseline per seed, its mean and 95% CI. Where baseline runs of several configurations share
    a setting, the configuration with the most seeds is the baseline."""
    settings: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in runs:
        if r["method"] != "odh":
            continue
        key = (
            _base_backbone(r),
            r["n_bits"],
            r["device"],
            tuple(r.get("epochs_detail", ())),
        )
        s = settings.setdefault(key, {"base": {}, "variants": {}})
        value = float(r["metrics"][metric])
        if is_baseline(r):
            s["base"].setdefault(r.get("config_key", ""), {})[int(r["seed"])] = value
        elif r.get("variant", "default") != "default" or r["label"] != "ODH-BNN":
            name = (r["label"], r.get("variant", "default"), r["layer"], r["backbone"])
            s["variants"].setdefault(name, {})[int(r["seed"])] = value
    rows = []
    for key in sorted(settings, key=lambda k: tuple(str(v) for v in k)):
        base_by_config, variants = settings[key]["base"], settings[key]["variants"]
        if not base_by_config:
            continue
        base = max(base_by_config.values(), key=len)
        for name in sorted(variants, key=lambda n: tuple(str(v) for v in n)):
            seeds = variants[name]
            common = sorted(set(base) & set(seeds))
            if not common:
                continue
            diffs = [seeds[s] - base[s] for s in common]
            rows.append(
                {
                    "backbone": key[0], "n_bits": key[1], "device": key[2], "epochs": key[3],
                    "label": name[0], "variant": name[1], "layer": name[2],
                    "variant_backbone": name[3], "seeds": common,
                    "mean": statistics.mean(seeds[s] for s in common),
                    "baseline_mean": statistics.mean(base[s] for s in common),
                    "diff": statistics.mean(diffs), "ci": paired_ci(diffs),
                }
            )  # fmt: skip
    return rows


def variant_markdown(runs: list[dict[str, Any]]) -> list[str]:
    """The markdown section: each ODH variant (and ODH-FP) − the ODH-BNN baseline, paired by
    seed, with the 95% CI."""
    rows = variant_rows(runs)
    if not rows:
        return []
    lines = [
        "## ODH variants against the ODH-BNN baseline (paired by seed)",
        "",
        "Tie-aware mAP@ALL; baseline = the default ODH-BNN run of the setting (the methods "
        "grid's); Δ = variant − baseline averaged over the seeds both ran; 95% CI = mean Δ ± "
        "t(0.975, n−1)·sd/√n (n/a with one pair). The ODH-FP row is the gap the variants try "
        "to close.",
        "",
        "| backbone | K | epochs | run | variant | layer | seeds | mAP | baseline mAP | "
        "Δ vs baseline | 95% CI |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ci = "n/a" if r["ci"] is None else f"[{r['ci'][1]:+.4f}, {r['ci'][2]:+.4f}]"
        variant = r["variant"]
        if r["variant_backbone"] != r["backbone"]:
            variant += f" ({r['variant_backbone']})"
        lines.append(
            f"| {r['backbone']} | {r['n_bits']} | {r['epochs']} | {r['label']} | {variant} | "
            f"{r['layer']} | {len(r['seeds'])} | {r['mean']:.4f} | {r['baseline_mean']:.4f} | "
            f"{r['diff']:+.4f} | {ci} |"
        )
    return [*lines, ""]


#: Paired seeds a "better" claim needs (ALGORITHMS.md §4).
MIN_CLAIM_SEEDS = 5


def _ci_text(ci: tuple[float, float, float] | None, sign: float = 1.0) -> str:
    if ci is None:
        return "no interval"
    low, high = sorted((sign * ci[1], sign * ci[2]))
    return f"95% CI [{low:+.4f}, {high:+.4f}]"


def _verdict(n_seeds: int, ok: bool) -> str:
    """MET / MISSED with ≥ MIN_CLAIM_SEEDS paired seeds, else "not shown (...)"."""
    if n_seeds < MIN_CLAIM_SEEDS:
        return f"not shown ({n_seeds} paired seeds < {MIN_CLAIM_SEEDS})"
    return "MET" if ok else "MISSED"


def _target_text(target: float, need_ci: bool) -> str:
    """``target ≥ +0.01, CI above 0`` / ``target ≥ −0.02`` (typographic minus)."""
    text = f"target ≥ {target:+.2f}".replace("-", "−")
    return text + (", CI above 0" if need_ci else "")


def _seed_values(
    runs: list[dict[str, Any]], setting: tuple[Any, ...], label: str, variant: str = "default"
) -> dict[int, float]:
    """Seed → tie-aware mAP@ALL of the 64-bit runs ``label``/``variant`` of ``setting``
    (grid backbone, device, schedule)."""
    out: dict[int, float] = {}
    for r in runs:
        key = (_base_backbone(r), r["device"], tuple(r.get("epochs_detail", ())))
        if (r["n_bits"] == 64 and key == setting and r["label"] == label
                and r.get("variant", "default") == variant):  # fmt: skip
            out[int(r["seed"])] = float(r["metrics"]["map_all_tie_aware"])
    return out


def _claim_line(
    head: str, what: str, a: dict[int, float], b: dict[int, float], target: float, need_ci: bool
) -> str:
    """``what`` = mean over the paired seeds of a − b, its CI and the verdict against
    ``target`` (and, with ``need_ci``, the CI above 0), judged with ≥ MIN_CLAIM_SEEDS seeds."""
    common = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in common]
    ci = paired_ci(diffs)
    mean = statistics.mean(diffs) if diffs else float("nan")
    ok = mean >= target and (not need_ci or (ci is not None and ci[1] > 0))
    cond = _target_text(target, need_ci)
    return (
        f"{head} {what} = {mean:+.4f}, {_ci_text(ci)}, {len(common)} seeds ({cond}): "
        f"**{_verdict(len(common), ok)}**"
    )


def _best_variant_lines(
    runs: list[dict[str, Any]], setting: tuple[Any, ...], head: str, best_other: str | None
) -> list[str]:
    """The targets again for the best ODH-BNN variant of ``setting`` that beats the baseline
    with ≥ MIN_CLAIM_SEEDS paired seeds and its CI above 0 (none: no line)."""
    better = [
        v for v in variant_rows(runs)
        if (v["backbone"], v["device"], v["epochs"]) == setting and v["n_bits"] == 64
        and v["label"] == "ODH-BNN" and len(v["seeds"]) >= MIN_CLAIM_SEEDS
        and v["ci"] is not None and v["ci"][1] > 0
    ]  # fmt: skip
    if not better:
        return []
    best = max(better, key=lambda v: v["mean"])
    mine = _seed_values(runs, setting, "ODH-BNN", best["variant"])
    # a variant such as ``wide`` is another (costlier) network than the runs it is compared with
    net = "" if best["variant_backbone"] == setting[0] else (
        f"backbone {best['variant_backbone']}, not {setting[0]}")  # fmt: skip
    lines = []
    if best_other is not None:
        other = _seed_values(runs, setting, f"{best_other.upper()}-BNN")
        tag = "; ".join(x for x in ("the best variant", net) if x)
        what = f"ODH-BNN {best['variant']} ({tag}) − {best_other}"
        lines.append(_claim_line(head, what, mine, other, 0.01, True))
    fp = _seed_values(runs, setting, "ODH-FP")
    if fp:
        what = f"ODH-BNN {best['variant']}{f' ({net})' if net else ''} − ODH-FP"
        lines.append(_claim_line(head, what, mine, fp, -0.02, False))
    return lines


def odh_target_lines(runs: list[dict[str, Any]]) -> list[str]:
    """The ODH targets per 64-bit setting, from the paired rows: ODH-BNN ≥ the best other BNN
    method + 0.01 with the CI of the paired difference above 0, and ODH-BNN ≥ ODH-FP − 0.02;
    each MET / MISSED only with ≥ ``MIN_CLAIM_SEEDS`` paired seeds, else "not shown"."""
    lines: list[str] = []
    gaps = {
        (r["backbone"], r["device"], r["epochs"]): r
        for r in variant_rows(runs)
        if r["label"] == "ODH-FP" and r["variant"] == "default" and r["n_bits"] == 64
    }
    by_setting: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in paired_rows(runs):
        if r["n_bits"] == 64 and r["layer"] != "fp":
            by_setting.setdefault((r["backbone"], r["device"], r["epochs"]), []).append(r)
    for setting in sorted(set(by_setting) | set(gaps), key=lambda k: tuple(map(str, k))):
        head = f"- {setting[0]}, {setting[1]}, epochs {setting[2]}:"
        others = by_setting.get(setting, [])
        best = max(others, key=lambda r: r["mean"]) if others else None
        if best is not None:
            n, margin, ci = len(best["seeds"]), -best["diff"], best["ci"]
            verdict = _verdict(n, margin >= 0.01 and ci is not None and -ci[2] > 0)
            lines.append(
                f"{head} ODH-BNN − best other BNN method ({best['method']}) = {margin:+.4f}, "
                f"{_ci_text(ci, -1.0)}, {n} seeds ({_target_text(0.01, True)}): **{verdict}**"
            )
        gap = gaps.get(setting)
        if gap is not None:
            n, diff = len(gap["seeds"]), -gap["diff"]
            lines.append(
                f"{head} ODH-BNN − ODH-FP = {diff:+.4f}, {_ci_text(gap['ci'], -1.0)}, {n} seeds "
                f"({_target_text(-0.02, False)}): **{_verdict(n, diff >= -0.02)}**"
            )
        lines += _best_variant_lines(runs, setting, head, best["method"] if best else None)
    if not lines:
        return []
    return [
        "## ODH targets (64 bits, paired by seed)",
        "",
        "Best other BNN method = the highest mean over the seeds it shares with ODH-BNN. A target "
        f"is judged only with ≥ {MIN_CLAIM_SEEDS} paired seeds. Where an ODH-BNN variant beats "
        f"the default run (≥ {MIN_CLAIM_SEEDS} paired seeds, CI above 0), the best such variant "
        "is judged against the same targets too (the others keep their default training).",
        "",
        *lines,
        "",
    ]
