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
