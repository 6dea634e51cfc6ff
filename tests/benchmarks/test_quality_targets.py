"""The ODH target lines of the quality report: judged from paired seeds, only with ≥ 5 of them."""

from __future__ import annotations

from typing import Any

from benchmarks._quality_paired import MIN_CLAIM_SEEDS, odh_target_lines


def _run(method: str, seed: int, value: float, binary: bool = True) -> dict[str, Any]:
    label = f"{method.upper()}-{'BNN' if binary else 'FP'}"
    return {
        "method": method, "label": label, "variant": "default", "seed": seed,
        "backbone": "resnet_small", "layer": "reactnet" if binary else "fp", "n_bits": 64,
        "device": "cpu", "epochs_detail": [1, 2, 2], "config_key": label,
        "metrics": {"map_all_tie_aware": value},
    }  # fmt: skip


def _grid(
    seeds: int, odh: list[float], shc: list[float], csq: list[float], fp: list[float]
) -> list[dict[str, Any]]:
    runs = []
    for s in range(seeds):
        runs += [_run("odh", s, odh[s]), _run("shc", s, shc[s]), _run("csq", s, csq[s])]
        runs.append(_run("odh", s, fp[s], binary=False))
    return runs


def test_met_with_five_seeds_and_a_margin_whose_interval_excludes_zero() -> None:
    odh = [0.70, 0.71, 0.72, 0.70, 0.71]
    shc = [v - 0.02 + 0.001 * i for i, v in enumerate(odh)]  # best other: Δ ≈ +0.018
    csq = [v - 0.05 for v in odh]
    fp = [v + 0.015 for v in odh]  # gap −0.015 ≥ −0.02
    text = "\n".join(odh_target_lines(_grid(MIN_CLAIM_SEEDS, odh, shc, csq, fp)))
    assert "best other BNN method (shc) = +0.0180" in text
    assert text.count("**MET**") == 2
    assert "ODH-BNN − ODH-FP = -0.0150" in text


def test_missed_when_the_interval_spans_zero_or_the_gap_is_wide() -> None:
    odh = [0.70, 0.73, 0.69, 0.74, 0.70]
    shc = [0.72, 0.70, 0.71, 0.70, 0.72]  # Δ mean +0.002, wide interval
    fp = [v + 0.05 for v in odh]
    text = "\n".join(odh_target_lines(_grid(5, odh, shc, shc, fp)))
    assert text.count("**MISSED**") == 2


def test_fewer_than_five_seeds_is_not_judged() -> None:
    odh, shc = [0.70, 0.71, 0.72], [0.60, 0.61, 0.62]
    text = "\n".join(odh_target_lines(_grid(3, odh, shc, shc, odh)))
    assert "MET" not in text and "MISSED" not in text
    assert text.count("not shown (3 paired seeds < 5)") == 2
    assert odh_target_lines([]) == []


def test_the_best_significant_variant_is_judged_too() -> None:
    odh = [0.70, 0.71, 0.72, 0.70, 0.71]
    shc = [v + 0.01 for v in odh]  # beats the default ODH run
    csq = [v - 0.05 for v in odh]
    fp = [v + 0.045 for v in odh]
    runs = _grid(5, odh, shc, csq, fp)
    steady = [0.030, 0.031, 0.029, 0.030, 0.030]  # variant − default: CI well above 0
    for s in range(5):
        for variant, delta in (("init-from-fp", steady[s]), ("noisy", 0.05 * (-1) ** s)):
            runs.append(_run("odh", s, odh[s] + delta) | {"variant": variant})
    lines = [x for x in odh_target_lines(runs) if "init-from-fp" in x]
    assert not any("noisy" in x for x in odh_target_lines(runs))  # its CI spans 0
    assert len(lines) == 2
    assert "init-from-fp (the best variant) − shc = +0.0200" in lines[0]
    assert lines[0].endswith("**MET**")
    assert "init-from-fp − ODH-FP = -0.0150" in lines[1] and lines[1].endswith("**MET**")


def test_a_best_variant_on_another_backbone_says_so() -> None:
    odh = [0.70, 0.71, 0.72, 0.70, 0.71]
    runs = _grid(5, odh, [v + 0.01 for v in odh], odh, [v + 0.05 for v in odh])
    for s in range(5):  # a wider network: its records keep the grid backbone as base_backbone
        wide = _run("odh", s, odh[s] + 0.04 + 0.001 * s)
        runs.append(wide | {"variant": "wide", "backbone": "resnet_small_wide",
                            "base_backbone": "resnet_small"})  # fmt: skip
    lines = [x for x in odh_target_lines(runs) if "wide" in x]
    assert len(lines) == 2
    net = "backbone resnet_small_wide, not resnet_small"
    assert f"ODH-BNN wide (the best variant; {net}) − shc = +0.0320" in lines[0]
    assert f"ODH-BNN wide ({net}) − ODH-FP = -0.0080" in lines[1]
    assert all(x.endswith("**MET**") for x in lines)
