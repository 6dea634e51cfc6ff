"""PIL plots: a valid PNG with lines in the series colours; bad input is rejected."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odh_core.metrics import precision_recall_curves
from odh_core.packing import pack_bits
from odh_core.plots import PALETTE, _ticks, line_plot, pr_and_precision_at_n


def test_line_plot_writes_png_with_series_colours(tmp_path: Path) -> None:
    out = line_plot(
        {"a": ([0, 0.5, 1], [1, 0.6, 0.2]), "b": ([0, 1], [0.1, 0.9])},
        str(tmp_path / "p.png"), title="t", xlabel="x", ylabel="y",
    )  # fmt: skip
    img = Image.open(out)
    assert img.format == "PNG" and img.size == (720, 480)
    colours = {c for _, c in img.getcolors(maxcolors=1 << 16)}
    assert PALETTE[0] in colours and PALETTE[1] in colours


def test_line_plot_rejects_bad_series(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        line_plot({}, str(tmp_path / "x.png"), title="t", xlabel="x", ylabel="y")
    with pytest.raises(ValueError, match="equal length"):
        line_plot({"a": ([1, 2], [1])}, str(tmp_path / "x.png"), title="t", xlabel="", ylabel="")


def test_ticks_cover_range() -> None:
    assert _ticks(0, 1) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert _ticks(0, 3)[-1] <= 3


def test_pr_plots_from_metrics(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    centres = rng.standard_normal((3, 16))
    codes = pack_bits(centres[labels] + 0.8 * rng.standard_normal((60, 16)))
    curves = precision_recall_curves(codes[:10], labels[:10], codes, labels, n_bits=16)
    paths = pr_and_precision_at_n({"m": curves}, str(tmp_path / "q"))
    for p in paths:
        assert Image.open(p).format == "PNG"
