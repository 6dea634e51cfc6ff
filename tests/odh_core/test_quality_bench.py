"""`odh bench quality --runs smoke` on a tiny fake Fashion-MNIST (IDX files) without Ray; the
odh-ablations grid and its paired report."""

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def test_quality_smoke_without_ray(tmp_path: Path, fake_fmnist: Callable[..., Path]) -> None:
    src = fake_fmnist(tmp_path, 16, 5)
    out = tmp_path / "results"
    cmd = [
        sys.executable, "-m", "benchmarks.quality", "--runs", "smoke", "--no-ray",
        "--device", "cpu", "--source", str(src), "--output", str(out), "--threads", "1",
        "--query-per-class", "2", "--train-per-class", "8", "--batch-size", "8",
    ]  # fmt: skip
    probe = (
        "import sys, runpy; sys.argv = sys.argv[1:]; "
        "sys.modules['ray'] = None; sys.modules['faiss'] = None; "  # importing them would fail
        "runpy.run_module('benchmarks.quality', run_name='__main__')"
    )
    res = subprocess.run(
        [sys.executable, "-c", probe, *cmd[2:]], cwd=REPO, capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads((out / "quality.json").read_text())
    assert [r["label"] for r in doc["runs"]] == ["ODH-BNN", "CSQ-BNN"]
    rec = doc["runs"][0]
    for key in ("method", "backbone", "layer", "binary", "n_bits", "protocol", "seed", "epochs",
                "wall_s", "device", "command"):  # fmt: skip
        assert key in rec
    assert rec["protocol"] == "fmnist-1" and rec["n_query"] == 8 and rec["n_database"] == 76
    # the split seeds, the centres and what decides the arithmetic are in every record
    assert rec["data_split"] == {"protocol": "fmnist-1", "seed": 0}
    assert rec["val_split"]["seed"] == rec["seed"] and rec["val_split"]["fraction"] == 0.1
    assert rec["determinism"]["num_threads"] == 1
    csq, k = doc["runs"][1]["centres"], doc["runs"][1]["n_bits"]  # 4 classes ≤ 2K: rows of H_K
    assert csq == {"kind": "hadamard", "min_distance": k // 2, "mean_distance": k / 2}
    assert set(rec["metrics"]) == {
        "map_all_tie_aware", "map_all_shuffled", "map_1000_tie_aware", "map_100_tie_aware", "p_h2"
    }  # fmt: skip
    # training learns: both methods rank far above chance — the tie-aware mAP of codes that are
    # all equal (every order equally likely), on the same query/database labels
    from benchmarks._quality_data import load_fmnist1
    from odh_core.metrics import evaluate_codes

    data = load_fmnist1(str(src), query_per_class=2, train_per_class=8)
    ql, dl = data["query"][1], data["database"][1]
    chance = evaluate_codes(
        np.zeros((len(ql), 8), np.uint8), ql, np.zeros((len(dl), 8), np.uint8), dl, n_bits=64
    )["map_all_tie_aware"]
    assert 0.2 < chance < 0.35  # 4 balanced classes
    for run in doc["runs"]:  # measured: ODH-BNN 0.69, CSQ-BNN 0.66
        assert run["metrics"]["map_all_tie_aware"] >= chance + 0.2, (run["label"], chance)
    md = (out / "quality.md").read_text()
    assert "ODH-BNN ≥ CSQ-BNN + 0.02" in md and "resnet18" in md
    # --append resumes: the runs the file holds (same configuration and seed) are skipped ...
    res = subprocess.run([*cmd, "--append"], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 of 2 runs already in" in res.stderr
    assert len(json.loads((out / "quality.json").read_text())["runs"]) == 2
    # ... unless --rerun asks for them again (one more run)
    res = subprocess.run(
        [*cmd, "--append", "--rerun", "--limit", "1"], cwd=REPO, capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(json.loads((out / "quality.json").read_text())["runs"]) == 3


# ------------------------------------------------------------------ the odh-ablations grid


def _args(**kw: object) -> argparse.Namespace:
    base = dict(
        model="resnet_small", epochs=(1, 2, 2), batch_size=128, threads=1, device="cpu",
        device_name="cpu", no_ray=True, size=28, channels=1, parallel=1, command="odh bench",
    )  # fmt: skip
    return argparse.Namespace(**{**base, **kw})


def test_odh_ablations_grid_pairs_with_the_methods_grid() -> None:
    from benchmarks._quality_grid import FP_TWIN, GRIDS, ODH_ABLATIONS, grid
    from benchmarks._quality_run import _config, spec_key

    assert "odh-ablations" in GRIDS
    specs = grid("odh-ablations", seeds=2)
    assert len(specs) == 2 * (2 + len(ODH_ABLATIONS))
    assert {s.seed for s in specs} == {0, 1} and {s.n_bits for s in specs} == {64}
    assert {s.variant for s in specs} == {"default", *ODH_ABLATIONS}
    assert set(ODH_ABLATIONS) == {
        "no-stage2", "hc-strong+separate-views", "w-agg-0.1", "w-agg-1", "n-pos-4", "n-pos-8",
        "distill", "two-step", "wide", "init-from-fp",
    }  # fmt: skip
    args = _args()
    methods = {(s.label, s.seed): spec_key(s, args) for s in grid("methods-64", seeds=2)}
    keys = {}
    for s in specs:
        keys[(s.label, s.variant, s.seed)] = spec_key(s, args)
        if s.variant == "default":  # the baseline and ODH-FP are the methods grid's runs
            assert s.label in ("ODH-BNN", "ODH-FP")
            assert keys[(s.label, s.variant, s.seed)] == methods[(s.label, s.seed)]
    # knobs added later stay out of a default run's key (the records already hold its key) ...
    base_key = keys[("ODH-BNN", "default", 0)]
    for knob in ("two_step", "init_from", "w_distill", "distill_temperature"):
        assert f'"{knob}"' not in base_key
    # ... and are in it when set
    assert '"two_step": true' in keys[("ODH-BNN", "two-step", 0)]
    assert '"w_distill": 1.0' in keys[("ODH-BNN", "distill", 0)]
    assert '"init_from": "fp-twin' in keys[("ODH-BNN", "init-from-fp", 0)]
    # every variant is its own configuration, the same for every seed
    per_variant = {(lab, v): k for (lab, v, _), k in keys.items()}
    assert len(set(per_variant.values())) == len(per_variant) == 2 + len(ODH_ABLATIONS)
    assert all(keys[(lab, v, 0)] == keys[(lab, v, 1)] for lab, v in per_variant)
    cfg = {s.variant: _config(s, args) for s in specs if s.label == "ODH-BNN" and s.seed == 0}
    assert cfg["wide"].model == "resnet_small_wide" and cfg["default"].model == "resnet_small"
    assert cfg["two-step"].two_step and not cfg["default"].two_step
    assert cfg["init-from-fp"].init_from == FP_TWIN
    assert cfg["distill"].full_method_config()["w_distill"] > 0
    assert (cfg["no-stage2"].transition_epoch, cfg["no-stage2"].stage2_epochs) == (4, 0)
    hc = cfg["hc-strong+separate-views"].full_method_config()
    assert hc["hc_strong"] and hc["separate_views"]
    assert cfg["w-agg-0.1"].full_method_config()["w_agg"] == 0.1
    assert cfg["w-agg-1"].full_method_config()["w_agg"] == 1.0
    assert (cfg["n-pos-4"].n_pos, cfg["n-pos-8"].n_pos, cfg["default"].n_pos) == (4, 8, 2)


def _fake_record(label: str, variant: str, seed: int, value: float, **kw: object) -> dict:
    metrics = dict.fromkeys(
        ("map_all_tie_aware", "map_all_shuffled", "map_1000_tie_aware", "map_100_tie_aware",
         "p_h2"), value,
    )  # fmt: skip
    rec = {
        "method": "odh", "label": label, "variant": variant, "backbone": "resnet_small",
        "base_backbone": "resnet_small", "layer": "reactnet" if label.endswith("BNN") else "fp",
        "binary": label.endswith("BNN"), "n_bits": 64, "device": "cpu", "seed": seed,
        "epochs": 5, "epochs_detail": [1, 2, 2], "wall_s": 1.0, "command": "odh bench quality",
        "runner": "in-process", "config_key": f"{label}/{variant}", "metrics": metrics,
    }  # fmt: skip
    rec.update(kw)
    return rec


def test_variant_report_paired_difference_with_ci(tmp_path: Path) -> None:
    import statistics

    from benchmarks._quality_paired import t975, variant_rows
    from benchmarks._quality_report import write_report

    base = [0.70, 0.72, 0.71, 0.69, 0.73]
    distill_delta = [0.010, 0.020, 0.015, 0.005, 0.012]
    runs = [_fake_record("ODH-BNN", "default", s, v) for s, v in enumerate(base)]
    runs += [
        _fake_record("ODH-BNN", "distill", s, base[s] + d) for s, d in enumerate(distill_delta)
    ]
    runs += [_fake_record("ODH-FP", "default", s, base[s] + 0.05) for s in range(3)]
    runs += [  # the wide variant: another backbone, paired with the grid backbone's baseline
        _fake_record("ODH-BNN", "wide", s, base[s] + 0.03, backbone="resnet_small_wide")
        for s in (0, 1)
    ]
    runs += [_fake_record("ODH-BNN", "two-step", 9, 0.5)]  # no baseline seed 9: no row
    runs += [_fake_record("CSQ-BNN", "default", 0, 0.6, method="csq")]  # not an ODH variant
    rows = {(r["label"], r["variant"]): r for r in variant_rows(runs)}
    assert set(rows) == {("ODH-BNN", "distill"), ("ODH-FP", "default"), ("ODH-BNN", "wide")}
    d = rows[("ODH-BNN", "distill")]
    mean = statistics.mean(distill_delta)
    half = t975(4) * statistics.stdev(distill_delta) / 5**0.5
    assert d["seeds"] == [0, 1, 2, 3, 4] and abs(d["diff"] - mean) < 1e-12
    assert abs(d["ci"][1] - (mean - half)) < 1e-12 and abs(d["ci"][2] - (mean + half)) < 1e-12
    fp = rows[("ODH-FP", "default")]
    assert fp["seeds"] == [0, 1, 2] and abs(fp["diff"] - 0.05) < 1e-12
    assert rows[("ODH-BNN", "wide")]["variant_backbone"] == "resnet_small_wide"
    write_report({"runs": runs}, str(tmp_path), "q")
    md = (tmp_path / "q.md").read_text()
    assert "## ODH variants against the ODH-BNN baseline (paired by seed)" in md
    section = md.split("## ODH variants against the ODH-BNN baseline")[1]
    line = next(x for x in section.splitlines() if "| distill |" in x)
    assert f"{mean:+.4f}" in line and f"[{mean - half:+.4f}, {mean + half:+.4f}]" in line
    assert "| wide (resnet_small_wide) |" in md


def test_init_from_fp_run_trains_its_twin_first(
    tmp_path: Path, fake_fmnist: Callable[..., Path]
) -> None:
    """The init-from-fp variant: the run trains ODH-FP of its seed first, starts from it, and
    says so in its record (the configuration key stays that of the grid's spec)."""
    from benchmarks._quality_data import load_fmnist1
    from benchmarks._quality_grid import ODH_ABLATIONS, RunSpec
    from benchmarks._quality_run import run_one, spec_key

    src = fake_fmnist(tmp_path, 16, 5)
    data = load_fmnist1(str(src), query_per_class=2, train_per_class=8)
    data["train_model"] = data["train"]
    args = _args(epochs=(1, 1, 1), batch_size=8)
    spec = RunSpec(
        "ODH-BNN", "odh", True, 16, 0, variant="init-from-fp",
        overrides=dict(ODH_ABLATIONS["init-from-fp"]),
    )  # fmt: skip
    rec = run_one(spec, data, args)
    twin = rec["init_from_run"]
    assert twin["kind"] == "fp-twin" and twin["seed"] == 0 and twin["label"] == "ODH-FP"
    assert twin["config_key"] == spec_key(RunSpec("ODH-FP", "odh", False, 16, 0), args)
    assert rec["config_key"] == spec_key(spec, args) and rec["variant"] == "init-from-fp"
    assert rec["train_config"]["init_from"].startswith("fp-twin")
    assert rec["metrics"]["map_all_tie_aware"] > 0.4  # 4 classes: chance about 0.27
