"""`odh bench quality --runs smoke` on a tiny fake Fashion-MNIST (IDX files) without Ray."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def _fake_fmnist(root: Path, per_class_train: int = 16, per_class_test: int = 5) -> Path:
    rng = np.random.default_rng(0)
    for part, per in (("train", per_class_train), ("t10k", per_class_test)):
        labels = np.repeat(np.arange(4), per)
        images = rng.integers(0, 50, size=(len(labels), 28, 28)).astype(np.uint8)
        for c in range(4):
            images[labels == c, c * 7 : c * 7 + 7, :] += 200
        _write_idx(root / f"{part}-images-idx3-ubyte.gz", images)
        _write_idx(root / f"{part}-labels-idx1-ubyte.gz", labels)
    return root


def test_quality_smoke_without_ray(tmp_path: Path) -> None:
    src = _fake_fmnist(tmp_path)
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
