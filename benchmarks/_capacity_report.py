"""The capacity benchmark's report: merged rows, odh/FAISS ratios, targets, SLO capacity, the
projection to one billion codes (the cost model of ``docs/capacity.md``), Markdown and frontiers.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.plots import line_plot

logger = logging.getLogger(__name__)

TARGET_QPS_RATIO = 0.9
TARGET_P50_RATIO = 2.0
RAM_USABLE = 0.75  # share of a node's memory the index may take (the rest: OS, Ray, buffers)
BILLION = 1_000_000_000
ROW_FIELDS = (
    "data", "n", "n_bits", "index_type", "params", "source", "threads", "recall_at_10",
    "qps_per_core", "p50_ms", "p99_ms", "build_s", "ram_bytes_per_code", "disk_bytes_per_code",
)  # fmt: skip


def row_key(r: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies a measurement: a rerun of the same key replaces the older row."""
    params = json.dumps(r["params"], sort_keys=True)
    return (r["data"], r["n"], r["n_bits"], r["index_type"], params, r["source"], r["threads"])


def merge_rows(old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]) -> list[dict]:
    """``old`` rows with ``new`` ones added (a new row replaces an old one of the same key)."""
    merged = {row_key(r): r for r in old}
    merged.update({row_key(r): r for r in new})
    return list(merged.values())


def _same_point(r: dict[str, Any], source: str, rows: Sequence[dict[str, Any]]) -> dict | None:
    key = row_key({**r, "source": source})
    return next((x for x in rows if row_key(x) == key), None)


def ratios(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """odh against the plain FAISS index of the same type at every shared operating point."""
    out = []
    for r in rows:
        ref = _same_point(r, "faiss", rows) if r["source"] == "odh" else None
        if ref is None:
            continue
        out.append(
            {k: r[k] for k in ("data", "n", "n_bits", "index_type", "params", "threads")}
            | {
                "recall_at_10": r["recall_at_10"],
                "faiss_recall_at_10": ref["recall_at_10"],
                "qps_ratio": round(r["qps_per_core"] / ref["qps_per_core"], 3),
                "p50_ratio": round(r["p50_ms"] / ref["p50_ms"], 3),
            }
        )
    return out


def quiet_load(cpus: int) -> float:
    """The highest 1-minute load average at which a row counts as measured on a quiet machine:
    the benchmark's own threads (up to the CPU count) plus half a core of other work."""
    return cpus + 0.5


def is_quiet(r: dict[str, Any], max_load: float | None) -> bool:
    """Whether row ``r`` was measured at a load average ≤ ``max_load`` (None: every row)."""
    load = r.get("loadavg")
    return max_load is None or not load or float(load[0]) <= max_load


def loaded_blocks(rows: Sequence[dict[str, Any]], max_load: float | None) -> list[str]:
    """The (data, n, bits, type) blocks with rows measured above ``max_load``."""
    names = {f"{r['data']} {r['n']:,} {r['n_bits']}-bit {r['index_type']}"
             for r in rows if not is_quiet(r, max_load)}  # fmt: skip
    return sorted(names)


def targets(
    rows: Sequence[dict[str, Any]], min_recall: float, max_load: float | None = None
) -> list[str]:
    """The issue's targets, each stated as MET or MISSED (or not measured), judged on the rows
    measured at a load average ≤ ``max_load`` (ratios of a loaded machine are not the code's)."""
    rows = [r for r in rows if is_quiet(r, max_load)]
    rat = [x for x in ratios(rows) if x["faiss_recall_at_10"] >= min_recall]
    if not rat:
        return [f"odh ≥ {TARGET_QPS_RATIO}× FAISS QPS at recall@10 ≥ {min_recall}: not measured "
                "(no odh rows beside a FAISS row of the same type)"]  # fmt: skip
    q_miss = [x for x in rat if x["qps_ratio"] < TARGET_QPS_RATIO]
    p_miss = [x for x in rat if x["p50_ratio"] > TARGET_P50_RATIO]
    worst_q = min(rat, key=lambda x: x["qps_ratio"])
    worst_p = max(rat, key=lambda x: x["p50_ratio"])
    return [
        f"odh ≥ {TARGET_QPS_RATIO}× FAISS QPS at every point with recall@10 ≥ {min_recall} "
        f"({len(rat)} points, threads {sorted({x['threads'] for x in rat})}): "
        f"{'MET' if not q_miss else 'MISSED'} — lowest "
        f"{worst_q['qps_ratio']:.2f}× ({_name(worst_q)}), {len(q_miss)} below",
        f"odh single-query p50 ≤ {TARGET_P50_RATIO:.0f}× FAISS's: "
        f"{'MET' if not p_miss else 'MISSED'} — highest {worst_p['p50_ratio']:.2f}× "
        f"({_name(worst_p)}), {len(p_miss)} above",
    ]


def _name(r: dict[str, Any]) -> str:
    params = ", ".join(f"{k} {v}" for k, v in r["params"].items())
    where = f"{r['data']} {r['n']:,} {r['n_bits']}-bit {r['index_type']}"
    return f"{where} {params}, {r['threads']} thr"


def _bytes_per_code(r: dict[str, Any]) -> float:
    """Memory per code: the RSS growth, but never below the serialised size (RSS is noisy)."""
    return max(float(r["ram_bytes_per_code"]), float(r["disk_bytes_per_code"]), 1e-9)


def scaled_latency_codes(r: dict[str, Any], slo_ms: float) -> float:
    """Codes one core holds at the latency SLO, from a row's measured p99 (docs/capacity.md):
    flat and IVF (fixed nprobe/nlist share) scan a fixed share of the codes, so p99 ∝ n; HNSW
    walks a graph, p99 ∝ ln n."""
    n, p99 = float(r["n"]), float(r["p99_ms"])
    if r["index_type"] == "hnsw":
        return math.exp(min(700.0, math.log(n) * slo_ms / p99))
    return n * slo_ms / p99


def slo_capacity(
    rows: Sequence[dict[str, Any]],
    slo_ms: float,
    min_recall: float,
    memory_bytes: float,
    max_load: float | None = None,
) -> list[dict[str, Any]]:
    """Per (data, bits, source): the most codes per one-core replica at p99 ≤ ``slo_ms`` and
    recall@10 ≥ ``min_recall``: over the one-thread rows that reach the recall (measured at a
    load average ≤ ``max_load``: a loaded machine's p99 is scheduler delay), the smaller of the
    latency bound and the memory bound (``RAM_USABLE`` of ``memory_bytes``), the best row kept."""
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        if r["threads"] != 1 or r["recall_at_10"] < min_recall or not is_quiet(r, max_load):
            continue
        by_latency = scaled_latency_codes(r, slo_ms)
        by_memory = memory_bytes * RAM_USABLE / _bytes_per_code(r)
        codes = int(min(by_latency, by_memory))
        key = (r["data"], r["n_bits"], r["source"])
        if key not in best or codes > best[key]["codes"]:
            best[key] = {
                "data": r["data"], "n_bits": r["n_bits"], "source": r["source"],
                "index_type": r["index_type"], "params": r["params"], "measured_n": r["n"],
                "recall_at_10": r["recall_at_10"], "p99_ms": r["p99_ms"],
                "qps_per_core": r["qps_per_core"], "codes": codes,
                "bound": "latency" if by_latency <= by_memory else "memory",
                "by_latency": int(min(by_latency, 1e18)), "by_memory": int(by_memory),
                "bytes_per_code": round(_bytes_per_code(r), 2), "build_s": r["build_s"],
                "train_s": r.get("train_s", 0.0),
            }  # fmt: skip
    return sorted(best.values(), key=lambda x: (x["data"], x["n_bits"], x["source"]))


def project(
    point: dict[str, Any], memory_bytes: float, cores: int, total: int = BILLION
) -> dict[str, Any]:
    """The cost model of docs/capacity.md at ``total`` codes from one SLO-capacity point."""
    b = float(point["bytes_per_code"])
    shard = max(1, min(point["codes"], total))
    shards = math.ceil(total / shard)
    node_codes = memory_bytes * RAM_USABLE / b
    nodes = max(math.ceil(total / node_codes), math.ceil(shards / max(1, cores)))
    n = float(point["measured_n"])
    train_s = min(float(point.get("train_s", 0.0)), float(point["build_s"]))
    add_s = float(point["build_s"]) - train_s
    # the per-query cost at the shard's size relative to the measured size (docs/capacity.md)
    slowdown = math.log(shard) / math.log(n) if point["index_type"] == "hnsw" else shard / n
    return {
        **{k: point[k] for k in ("data", "n_bits", "source", "index_type", "params")},
        "codes": total,
        "codes_per_shard": shard,
        "shards": shards,
        "nodes": nodes,
        "ram_gib_total": round(total * b / 2**30, 1),
        "ram_gib_per_node": round(total * b / nodes / 2**30, 2),
        # a fixed training cost (the IVF quantizer, once on a sample) plus adds linear in codes,
        # every node adding its share in parallel
        "build_hours": round((train_s + add_s / n * total / nodes) / 3600, 3),
        "qps_per_replica": round(point["qps_per_core"] / slowdown, 1),
        "p99_ms_per_shard": round(point["p99_ms"] * slowdown, 3),
        "node_memory_gib": round(memory_bytes / 2**30, 1),
        "cores_per_node": cores,
        "checked_against_cluster": None,
    }


def projection_1b(
    capacity: Sequence[dict[str, Any]], memory_bytes: float, cores: int
) -> list[dict[str, Any]]:
    """One projection per SLO-capacity point (per data kind, bits and source)."""
    return [project(p, memory_bytes, cores) for p in capacity]


def _order(r: dict[str, Any]) -> tuple[Any, ...]:
    """Table order: size, bits, type, then the numeric parameters, threads, source."""
    params = tuple(sorted(r["params"].items()))
    return (r["n"], r["n_bits"], r["index_type"], params, r["threads"], r["source"])


def _fmt_params(p: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in p.items()) or "-"


def markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    lines = [
        "# Capacity benchmark",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine'].get('cpus')} CPUs, {result['machine'].get('memory_gib')} GiB;"
        f" load average per block in `capacity.json` (`loadavg`; the machine is shared).",
        "Tie-aware recall@10 (a hit counts if its distance ≤ the true 10th distance, by exact "
        "scan); batched QPS per core over batches of 1,000 queries; single-query p50/p99; RAM per "
        "code = RSS growth over the build; disk = the serialised index. Sources: `odh` (the "
        "project's index types), `faiss` and `usearch` (plain references over the same codes, "
        "measured interleaved with the odh rows of the same type).",
        "",
    ]
    loads = [r["loadavg"][0] for r in rows if r.get("loadavg")]
    if loads:
        lines += [
            f"1-minute load average while the rows were measured: {min(loads):.1f}–"
            f"{max(loads):.1f} on {result['machine'].get('cpus')} CPUs. Above the CPU count, "
            "every number is slowed by other work, two-thread rows most (a parallel search "
            "waits for its slowest thread): compare sources within one operating point (they "
            "were measured interleaved), not rows across blocks. On an oversubscribed machine "
            "FAISS's two OpenMP threads wait for each other at every parallel region (the likely "
            "reason its two-thread rows collapse); odh's scan threads split the batch once.",
            "",
        ]
    if result.get("loaded_blocks"):
        lines += [
            f"The targets, the SLO capacity and the projection use only rows measured at a load "
            f"average ≤ {result['quiet_load']:g} (the benchmark's own threads plus half a core); "
            "these blocks were measured above it and are shown but not judged: "
            + "; ".join(result["loaded_blocks"])
            + ".",
            "",
        ]
    for data in dict.fromkeys(r["data"] for r in rows):
        mine = [r for r in rows if r["data"] == data]
        info = result.get("data_info", {}).get(data, {})
        lines += [f"## {data}", "", f"Codes: {json.dumps(info)}" if info else "", ""]
        lines += ["| n | bits | type | params | source | thr | recall@10 | QPS/core | p50 ms | "
                  "p99 ms | build s | RAM B/code | disk B/code |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in sorted(mine, key=_order):
            lines.append(
                f"| {r['n']:,} | {r['n_bits']} | {r['index_type']} | {_fmt_params(r['params'])} "
                f"| {r['source']} | {r['threads']} | {r['recall_at_10']:.3f} | "
                f"{r['qps_per_core']:,.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                f"{r['build_s']:.1f} | {r['ram_bytes_per_code']:.1f} | "
                f"{r['disk_bytes_per_code']:.1f} |"
            )
        lines += ["", f"![frontier](capacity_{data}.png)", ""]
    rat = ratios(rows)
    lines += ["## odh / FAISS per operating point", ""]
    if rat:
        lines += ["| data | n | bits | type | params | thr | recall@10 | QPS ratio | p50 ratio |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for x in sorted(rat, key=lambda x: (x["data"], *_order({**x, "source": "odh"}))):
            lines.append(
                f"| {x['data']} | {x['n']:,} | {x['n_bits']} | {x['index_type']} | "
                f"{_fmt_params(x['params'])} "
                f"| {x['threads']} | {x['recall_at_10']:.3f} | {x['qps_ratio']:.2f} | "
                f"{x['p50_ratio']:.2f} |"
            )
    else:
        lines.append("No odh rows yet: the project's index-type adapters were not measured.")
    lines += ["", "## Targets", "", *[f"- {t}" for t in result["targets"]], ""]
    slo = result["slo"]
    lines += [
        f"## Capacity at the SLO (p99 ≤ {slo['p99_ms']} ms, recall@10 ≥ {slo['recall']}, one core)",
        "",
        "Derivation (docs/capacity.md): from each one-thread row with the recall, the latency "
        "bound scales the measured p99 to the SLO (flat/IVF: p99 ∝ n at a fixed nprobe/nlist "
        "share; HNSW: p99 ∝ ln n), the memory bound is "
        f"{RAM_USABLE:.0%} of this machine's RAM over the bytes per code; the capacity is the "
        "smaller, the best row kept. Extrapolated, not measured at that size.",
        "",
        "| data | bits | source | type | params | measured n | recall | p99 ms | codes | bound |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result["slo_capacity"]:
        lines.append(
            f"| {c['data']} | {c['n_bits']} | {c['source']} | {c['index_type']} | "
            f"{_fmt_params(c['params'])} | {c['measured_n']:,} | {c['recall_at_10']:.3f} | "
            f"{c['p99_ms']:.3f} | {c['codes']:,} | {c['bound']} |"
        )
    check = result.get("projection_check")
    checked = (
        f"one point measured, {check['qps_ratio']}× the predicted QPS (below)"
        if check
        else "**not yet checked**"
    )
    lines += ["", "## Projection to 1 billion codes", "",
              f"Cost model in docs/capacity.md. Checked against the local multi-node cluster: "
              f"{checked}.", "",
              "| data | bits | source | type | params | shards | nodes | RAM GiB | build h | "
              "QPS/replica | p99 ms/shard |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for p in result["projection_1b"]:
        lines.append(
            f"| {p['data']} | {p['n_bits']} | {p['source']} | {p['index_type']} | "
            f"{_fmt_params(p['params'])} | {p['shards']:,} | {p['nodes']:,} | "
            f"{p['ram_gib_total']:,} | {p['build_hours']} | {p['qps_per_replica']:,} | "
            f"{p['p99_ms_per_shard']} |"
        )
    if check:
        lines += _check_lines(check)
    lines.append("")
    return "\n".join(lines)


def _check_lines(c: dict[str, Any]) -> list[str]:
    """The ``projection_check`` section: reference, prediction and measurement side by side."""
    ref, pred, got = c["reference"], c["predicted"], c["measured"]
    return [
        "", "## Projection check on the local multi-node cluster", "",
        f"{c['n']:,} {c['data']} {c['n_bits']}-bit codes, `{c['index_type']}` "
        f"{_fmt_params(c['index_params'])}, search default {_fmt_params(c['search_defaults'])}, "
        f"{c['shards']} shards served by {c['nodes']} single-core searcher groups on "
        f"{c['nodes']} Ray nodes of this machine (load average {c['loadavg']}).", "",
        "| | QPS | p50 ms | p99 ms | recall@10 |", "|---|---|---|---|---|",
        f"| reference (one index, in process, 1 thread) | {ref['qps']:,} | {ref['p50_ms']} | "
        f"{ref['p99_ms']} | {ref['recall_at_10']} |",
        f"| cost model for the layout (s = {pred['slowdown']}) | {pred['qps']:,} | | "
        f"{pred['p99_ms']} | |",
        f"| measured over HTTP | {got['qps']:,} | {got['p50_ms']} | {got['p99_ms']} | "
        f"{got['recall_at_10']} |", "",
        f"Measured / predicted: QPS {c['qps_ratio']}, p99 {c['p99_ratio']} (the measurement "
        "includes HTTP, the ingress fan-out and merge, and the head, proxy and client on the "
        "same cores; the model does not).",
    ]  # fmt: skip


def frontiers(rows: Sequence[dict[str, Any]], out: Path) -> list[str]:
    """One recall–QPS frontier PNG per data kind (one-thread rows; a line per source, type,
    build setting and code length, through its sweep)."""
    paths = []
    for data in dict.fromkeys(r["data"] for r in rows):
        series: dict[str, tuple[list[float], list[float]]] = {}
        for r in rows:
            if r["data"] != data or r["threads"] != 1:
                continue
            build = {k: v for k, v in r["params"].items() if k in ("m", "nlist")}
            size = f"{r['n'] / 1e6:g}M" if r["n"] >= 1_000_000 else f"{r['n'] / 1e3:g}k"
            label = f"{r['source']} {r['index_type']} {_fmt_params(build)} {r['n_bits']}b {size}"
            xs, ys = series.setdefault(label.replace(" - ", " "), ([], []))
            xs.append(r["qps_per_core"])
            ys.append(r["recall_at_10"])
        for label, (xs, ys) in series.items():  # along the sweep: recall rising, QPS falling
            pts = sorted(zip(ys, xs, strict=True), key=lambda p: (p[0], -p[1]))
            series[label] = ([x for _, x in pts], [y for y, _ in pts])
        if series:
            path = str(out / f"capacity_{data}.png")
            paths.append(
                line_plot(
                    series,
                    path,
                    title=f"recall@10 vs QPS per core, {data} codes (1 thread)",
                    xlabel="QPS per core (log scale)",
                    ylabel="tie-aware recall@10",
                    ylim=(0, 1.02),
                    log_x=True,
                    size=(900, 560),
                )
            )
    return paths
