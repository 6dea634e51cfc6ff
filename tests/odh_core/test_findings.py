"""`odh bench findings`: code-geometry metrics against hand-computed cases, the loop's observe
hook (once per hash epoch, read-only) and a tiny end-to-end run writing json, md and png."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from benchmarks._findings_metrics import (
    centre_movement,
    centre_stats,
    class_mean_codes,
    code_centre_distances,
    code_metrics,
    inter_class_separation,
    intra_class_spread,
    plateau_epoch,
    radii_for,
    within_radius,
)


def _bits(rows: list[str]) -> np.ndarray:
    return np.array([[c == "1" for c in r] for r in rows], dtype=bool)


# class 0: 0000, 0001, 0011 ; class 1: 1111, 1110
CODES = _bits(["0000", "0001", "0011", "1111", "1110"])
LABELS = np.array([0, 0, 0, 1, 1])
CENTRES = _bits(["0000", "1111"])


def test_distances_to_centre_and_radius() -> None:
    d = code_centre_distances(CODES, LABELS, CENTRES)
    assert d.tolist() == [0, 1, 2, 0, 1]
    assert within_radius(d, [0, 1]) == {"r<=0": 0.4, "r<=1": 0.8}
    assert radii_for(64) == [0, 1, 2, 8, 16]
    assert radii_for(8) == [0, 1, 2]
    with pytest.raises(TypeError, match="bool"):
        code_centre_distances(CODES.astype(np.uint8), LABELS, CENTRES)
    with pytest.raises(ValueError, match="labels"):
        code_centre_distances(CODES, LABELS[:3], CENTRES)


def test_intra_class_spread_hand_computed() -> None:
    # class 0 pairs: d(0000,0001)=1, d(0000,0011)=2, d(0001,0011)=1 → mean 4/3
    # class 1 pair: d(1111,1110)=1 → 1; average over classes (4/3 + 1) / 2
    assert intra_class_spread(CODES, LABELS) == pytest.approx((4 / 3 + 1) / 2)


def _brute_between(codes: np.ndarray, labels: np.ndarray) -> float:
    ds = [
        (codes[i] != codes[j]).sum()
        for i in range(len(codes))
        for j in range(i + 1, len(codes))
        if labels[i] != labels[j]
    ]
    return float(np.mean(ds))


def test_inter_class_separation_hand_computed_and_brute_force() -> None:
    classes, means = class_mean_codes(CODES, LABELS)
    assert classes.tolist() == [0, 1]
    # class 0 majority per bit: 0,0,0(1 of 3),1(2 of 3) → 0001; class 1: 1,1,1,1(tie → +1) → 1111
    assert means.astype(int).tolist() == [[0, 0, 0, 1], [1, 1, 1, 1]]
    sep = inter_class_separation(CODES, LABELS)
    # between pairs: 0000-1111 4, 0000-1110 3, 0001-1111 3, 0001-1110 4, 0011-1111 2, 0011-1110 3
    assert sep["between_codes"] == pytest.approx(19 / 6)
    assert sep["class_means"] == 3.0 and sep["class_means_nearest"] == 3.0
    rng = np.random.default_rng(0)
    codes, labels = rng.random((40, 16)) < 0.5, rng.integers(0, 4, 40)
    got = inter_class_separation(codes, labels)["between_codes"]
    assert got == pytest.approx(_brute_between(codes, labels))


def test_centre_stats_and_movement() -> None:
    centres = _bits(["0000", "0011", "1111"])
    assert centre_stats(centres) == {"min": 2.0, "mean": pytest.approx(8 / 3)}
    moved = _bits(["0001", "0011", "1111"])
    real_prev = np.array([[-1.0, -1, -1, -1], [-1, -1, 1, 1], [1, 1, 1, 1]])
    real = np.array([[-1.0, -1, -1, 1], [-2, -2, 2, 2], [1, 1, 1, 1]])
    m = centre_movement(centres, moved, real_prev, real)
    assert m["bits_flipped_mean"] == pytest.approx(1 / 3) and m["bits_flipped_max"] == 1.0
    # cosines: (1+1+1−1)/4 = 0.5, 1 (scaled), 1
    assert m["cosine_min"] == pytest.approx(0.5)
    assert m["cosine_mean"] == pytest.approx(2.5 / 3)


def test_code_metrics_combines_them() -> None:
    m = code_metrics(CODES, LABELS, CENTRES)
    assert m["centre_distance_mean"] == pytest.approx(0.8)
    assert m["nearest_centre_is_own"] == 1.0
    assert m["inter_intra_ratio"] == pytest.approx((19 / 6) / ((4 / 3 + 1) / 2))
    # per bit ones: 2, 2, 3, 3 of 5 → |2p − 1| = 0.2 each
    assert m["bit_balance_mean_abs"] == pytest.approx(0.2)
    assert "centre_distance_mean" not in code_metrics(CODES, LABELS, None)


def test_plateau_epoch() -> None:
    assert plateau_epoch([10, 8, 7.9, 8.1, 7.8], 0.05) == 2  # after epoch 2: ≤ 5% lower
    assert plateau_epoch([10, 8, 6, 4], 0.05) is None  # still falling at the end
    assert plateau_epoch([10, 10.2, 8, 7.9], 0.05) == 3  # a blip is not a plateau
    assert plateau_epoch([1, 2, 2.05, 2.02], 0.05, decreasing=False) == 2
    with pytest.raises(ValueError, match="tol"):
        plateau_epoch([1, 2], -0.1)


# ------------------------------------------------------------------ the loop's observe hook


def test_observe_hook_once_per_hash_epoch_and_read_only(
    band_images: Callable[..., tuple[np.ndarray, np.ndarray]],
    state_digest: Callable[[dict[str, torch.Tensor]], str],
) -> None:
    from benchmarks._findings_run import _observer, prepare_data
    from odh_core.stages import LoopContext, fit
    from odh_core.train import TrainConfig

    images, labels = band_images(48, seed=3)
    cfg = TrainConfig(
        n_bits=16, warmup_epochs=1, transition_epoch=1, stage2_epochs=2, batch_size=8,
        val_fraction=0.25,
    )  # fmt: skip
    calls: list[tuple[int, int]] = []

    def count(rec: dict[str, Any], encoder: torch.nn.Module, method: Any) -> None:
        calls.append((rec["stage"], rec["epoch"]))

    plain = fit(images, labels, cfg, LoopContext(observe=count))
    assert calls == [(1, 0), (2, 1), (2, 2)]  # hash epochs only, once each, warm-up excluded
    data = prepare_data(
        images, labels, n_observe=20, val_fraction=0.25, batch_size=8, n_pos=2, seed=0
    )
    observer = _observer(data, n_pos=2, seed=0)
    observed = fit(images, labels, cfg, LoopContext(observe=observer))
    # training unchanged
    assert state_digest(observed.state_dict) == state_digest(plain.state_dict)
    assert [r["hash_epoch"] for r in observer.records] == [1, 2, 3]
    assert [r["stage"] for r in observer.records] == [1, 2, 2]
    assert "centre_movement" not in observer.records[0]
    assert "centre_movement" in observer.records[1]
    g = observer.records[-1]["stage2_gradients"]
    assert g["w_agg"] == 1e-3 and g["agg_over_hc"] == pytest.approx(
        1e-3 * g["agg_over_hc_unweighted"]
    )
    assert -1.0 <= g["cosine"] <= 1.0 and g["grad_norm_hc"] > 0
    # the observed codes are the encoder's eval-mode signs on the observed rows
    assert len(data.observe_idx) == 20 and set(data.observe_idx) <= set(range(len(images)))


# ------------------------------------------------------------------ a tiny end-to-end run


def test_tiny_findings_run_writes_json_md_png(
    tmp_path: Path, fake_fmnist: Callable[..., Path]
) -> None:
    from benchmarks.findings import Config, run

    out = tmp_path / "results"
    cfg = Config(
        runs=("odh-bnn", "odh-fp"), epochs="1,2,0", sweep_w_agg=(0.1,), sweep_stage2=1,
        n_bits=16, observe=16, train_per_class=8, query_per_class=2, batch_size=8,
        source=str(fake_fmnist(tmp_path / "src", 12, 3)), output=str(out),
    )  # fmt: skip
    assert run(cfg) == 0
    doc = json.loads((out / "findings.json").read_text())
    assert doc["single_seed"] is True and doc["command"].startswith("odh bench findings")
    assert [(r["method"], r["binary"]) for r in doc["runs"]] == [("odh", True), ("odh", False)]
    for r in doc["runs"]:
        assert [e["hash_epoch"] for e in r["epochs"]] == [1, 2]
        assert 0 <= r["epochs"][-1]["codes"]["centre_distance_mean"] <= 16
    assert set(doc["transitions"]) == {"odh BNN", "odh FP"}
    assert [s["label"] for s in doc["sweep"]] == ["reference", "w_agg=0.1"]
    assert doc["sweep"][1]["method_config"]["hc_strong"] is True
    t = doc["sweep_schedule"][1]
    # the settings resume the observed BNN run after epoch t: they share its first t epochs
    assert doc["sweep"][0]["epochs"][:t] == doc["sweep"][1]["epochs"][:t]
    assert doc["sweep"][0]["epochs"][:t] == doc["runs"][0]["epochs"][:t]
    assert [e["stage"] for e in doc["sweep"][0]["epochs"]] == [1] * t + [2]
    md = (out / "findings.md").read_text()
    assert "Single seed" in md and "## What the curves show" in md and "w_agg=0.1" in md
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "findings_centre_distance.png" in pngs and "findings_sweep_grad_ratio.png" in pngs
    assert all((out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
