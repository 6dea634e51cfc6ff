"""Benchmark plots (matplotlib): PNGs are written at the asked size; bad input is rejected."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.plots import latency_bars, line_plot, pr_and_precision_at_n
from odh_core.metrics import precision_recall_curves
from odh_core.packing import pack_bits


def test_line_plot_writes_png_of_the_asked_size(tmp_path: Path) -> None:
    out = line_plot(
        {"a": ([0, 0.5, 1], [1, 0.6, 0.2]), "b": ([0, 1], [0.1, 0.9])},
        str(tmp_path / "p.png"), title="t", xlabel="x", ylabel="y", size=(640, 400),
    )  # fmt: skip
    with Image.open(out) as img:
        img.load()  # decodes the whole file
        assert img.format == "PNG" and img.size == (640, 400)


def test_line_plot_rejects_bad_series(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        line_plot({}, str(tmp_path / "x.png"), title="t", xlabel="x", ylabel="y")
    with pytest.raises(ValueError, match="equal length"):
        line_plot({"a": ([1, 2], [1])}, str(tmp_path / "x.png"), title="t", xlabel="", ylabel="")
    assert not (tmp_path / "x.png").exists()


def test_pr_plots_from_metrics(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    centres = rng.standard_normal((3, 16))
    codes = pack_bits(centres[labels] + 0.8 * rng.standard_normal((60, 16)))
    curves = precision_recall_curves(codes[:10], labels[:10], codes, labels, n_bits=16)
    paths = pr_and_precision_at_n({"m": curves}, str(tmp_path / "q"))
    assert [Path(p).name for p in paths] == ["q_pr.png", "q_precision_at_n.png"]
    for p in paths:
        with Image.open(p) as img:
            img.load()
            assert img.format == "PNG" and img.size == (720, 480)


def test_latency_bars(tmp_path: Path) -> None:
    rows = [
        {"mode": "inprocess", "groups": 1, "batch": 1, "p50_ms": 0.4, "p99_ms": 0.9},
        {"mode": "serve", "groups": 2, "batch": 256, "p50_ms": 31.0, "p99_ms": 55.5},
    ]
    out = latency_bars(rows, str(tmp_path / "lat.png"))
    with Image.open(out) as img:
        img.load()
        assert img.format == "PNG" and img.size == (900, 480)
    with pytest.raises(ValueError, match="empty"):
        latency_bars([], str(tmp_path / "none.png"))


def _record(curves: dict, seed: int, **over: object) -> dict:
    rec = {
        "method": "odh", "label": "ODH-BNN", "variant": "default", "backbone": "resnet_small",
        "layer": "reactnet", "n_bits": 16, "epochs": 25, "epochs_detail": [3, 12, 10],
        "device": "NVIDIA H100 80GB HBM3", "seed": seed, "wall_s": 1.0, "command": "x",
        "config_key": '{"batch_size": 128}', "curves": curves,
        "metrics": dict.fromkeys(
            ("map_all_tie_aware", "map_all_shuffled", "map_1000_tie_aware", "map_100_tie_aware",
             "p_h2"), 0.5,
        ),
    }  # fmt: skip
    rec.update(over)
    return rec


def test_quality_plots_keyed_by_full_run_configuration(tmp_path: Path) -> None:
    """Runs that differ in schedule, device or any config field never replace each other's
    curves; the seeds of one configuration are averaged."""
    from benchmarks._quality_report import curve_figures, write_report

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 40)

    def curves() -> dict:
        codes = pack_bits(rng.random((40, 16)) < 0.5)
        return precision_recall_curves(codes[:8], labels[:8], codes, labels, n_bits=16)

    a, b, c, d = curves(), curves(), curves(), curves()
    runs = [
        _record(a, 0),
        _record(b, 1),  # the same configuration, another seed: averaged with a
        _record(c, 0, epochs=8, epochs_detail=[2, 3, 3], device="cpu"),  # another figure
        _record(d, 0, config_key='{"batch_size": 64}'),  # same figure, another configuration
    ]
    figures = curve_figures(runs)
    assert len(figures) == 2
    gpu = next(v for k, v in figures.items() if "h100" in k)
    cpu = next(v for k, v in figures.items() if k.endswith("-cpu"))
    assert len(gpu) == 2 and len(cpu) == 1
    averaged = next(v for k, v in gpu.items() if "(2 seeds)" in k)
    single = next(v for k, v in gpu.items() if "(1 seed)" in k)
    np.testing.assert_allclose(
        averaged["precision"], (np.array(a["precision"]) + b["precision"]) / 2
    )
    np.testing.assert_allclose(
        averaged["precision_at_n"], (np.array(a["precision_at_n"]) + b["precision_at_n"]) / 2
    )
    assert single["recall"] == d["recall"]
    assert next(iter(cpu.values()))["precision"] == c["precision"]
    written = write_report({"runs": runs}, str(tmp_path), "quality")
    pngs = sorted(Path(p).name for p in written if p.endswith(".png"))
    assert len(pngs) == 4 and len(set(pngs)) == 4  # 2 figures × (PR, P@N), none overwritten
    assert all(Path(tmp_path, p).stat().st_size > 0 for p in pngs)
