"""Training progress: every epoch ends with a line giving its loss, the validation mAP (hashing
epochs) and the time left; long epochs log batch lines when stderr is not a terminal."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import numpy as np
import pytest


def test_fit_logs_an_epoch_line_with_loss_map_and_time_left(
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    band_images: Callable[..., tuple[np.ndarray, np.ndarray]],
) -> None:
    from odh_core import stages
    from odh_core.stages import LoopContext, fit
    from odh_core.train import TrainConfig

    images, labels = band_images(32, seed=0)
    monkeypatch.setattr(stages._Progress, "_LINE_EVERY_S", 0.0)  # a batch line after every batch
    cfg = TrainConfig(
        n_bits=16, warmup_epochs=1, transition_epoch=1, stage2_epochs=1, batch_size=8,
        val_fraction=0.25, seed=0,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="odh_core.stages"):
        result = fit(images, labels, cfg, LoopContext())
    lines = [r.getMessage() for r in caplog.records if r.name == "odh_core.stages"]
    done = [line for line in lines if " done: " in line]
    assert [line.split(" done")[0] for line in done] == [
        "epoch 1/3 (warm-up)",
        "epoch 2/3 (stage 1)",
        "epoch 3/3 (stage 2)",
    ]
    for line, rec in zip(done, result.history, strict=True):
        assert f"loss {rec['loss']:.4f}" in line
        assert ("val mAP" in line) == ("val_map" in rec)
    assert re.search(r"2 epochs left, ~\d+s$", done[0]) and "0 epochs left" in done[-1]
    assert f"val mAP {result.history[-1]['val_map']:.4f}" in done[-1]
    batches = [line for line in lines if ": batch " in line]
    assert batches and all(re.search(r"batch \d+/\d+ \(\d+%\), loss \d", b) for b in batches)
