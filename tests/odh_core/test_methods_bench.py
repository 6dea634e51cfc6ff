"""`odh bench quality --runs methods-64` on a tiny fake Fashion-MNIST, in-process (no Ray): every
record carries the ALGORITHMS.md §4 keys + method_config, and the report pairs methods with ODH."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks._quality_paired import paired_ci, paired_rows, t975

REPO = Path(__file__).resolve().parents[2]


def test_paired_ci_by_hand() -> None:
    # diffs 0.1, 0.2, 0.3: mean 0.2, sd 0.1, half-width t(0.975, 2)·0.1/√3 = 4.303·0.0577350
    mean, low, high = paired_ci([0.1, 0.2, 0.3])  # type: ignore[misc]
    assert mean == pytest.approx(0.2)
    assert high - mean == pytest.approx(4.303 * 0.1 / 3**0.5)
    assert low == pytest.approx(2 * mean - high)
    assert paired_ci([0.5]) is None and t975(40) == 1.96


def _rec(method: str, seed: int, value: float) -> dict:
    return {
        "method": method, "backbone": "b", "layer": "reactnet", "n_bits": 64, "device": "cpu",
        "epochs_detail": [1, 1, 1], "variant": "default", "seed": seed,
        "metrics": {"map_all_tie_aware": value},
    }  # fmt: skip


def test_paired_rows_pair_by_seed() -> None:
    runs = [_rec("odh", 0, 0.5), _rec("odh", 1, 0.6), _rec("csq", 0, 0.4), _rec("csq", 1, 0.45)]
    runs.append(_rec("csq", 2, 0.9))  # no ODH partner: left out
    (row,) = paired_rows(runs)
    assert row["method"] == "csq" and row["seeds"] == [0, 1]
    assert row["diff"] == pytest.approx(((0.4 - 0.5) + (0.45 - 0.6)) / 2)


def test_methods_grid_smoke(tmp_path: Path, fake_fmnist: Callable[..., Path]) -> None:
    src = fake_fmnist(tmp_path, 16, 5)
    out = tmp_path / "results"
    cmd = [
        sys.executable, "-m", "benchmarks.quality", "--runs", "methods-64", "--no-ray",
        "--device", "cpu", "--source", str(src), "--output", str(out), "--threads", "1",
        "--query-per-class", "2", "--train-per-class", "8", "--batch-size", "8",
        "--epochs", "1,1,1", "--seeds", "2", "--methods", "odh", "bdnn-unsup",
    ]  # fmt: skip
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = json.loads((out / "quality.json").read_text())["runs"]
    assert len(runs) == 2 * 2 * 2  # methods × {BNN, FP} × seeds
    assert {(r["method"], r["binary"], r["seed"]) for r in runs} == {
        (m, b, s) for m in ("odh", "bdnn-unsup") for b in (True, False) for s in (0, 1)
    }
    for r in runs:
        for key in ("method", "backbone", "layer", "binary", "n_bits", "protocol", "seed",
                    "epochs", "wall_s", "device", "command", "metrics", "method_config",
                    "config_key"):  # fmt: skip
            assert key in r, key
    unsup = next(r for r in runs if r["method"] == "bdnn-unsup")
    assert unsup["method_config"]["feature_side"] == 7
    assert unsup["validation"]["best_val_map"] is None  # trained without labels
    md = (out / "quality.md").read_text()
    assert "Each method against ODH (paired by seed)" in md
    assert "| resnet_small | reactnet | 64 | bdnn-unsup | 2 |" in md
    assert "| resnet_small | fp | 64 | bdnn-unsup | 2 |" in md
    # one figure per backbone × K × schedule × device (BNN and FP curves side by side)
    assert len(list(out.glob("quality-resnet-small-64bits-*-cpu_pr.png"))) == 1
    assert len(list(out.glob("quality-resnet-small-64bits-*-cpu_precision_at_n.png"))) == 1
