"""Progress for logs: ``progress_bar`` off a terminal logs periodic lines (encode, build), and the
training worker's progress lines reach the driver through ``ProgressRelay``."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_log_progress_logs_every_interval_and_at_the_end(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from odh_core import progress

    clock = _Clock()
    monkeypatch.setattr(progress, "time", SimpleNamespace(perf_counter=clock))
    with (
        caplog.at_level(logging.INFO, logger="odh_core.progress"),
        progress.LogProgress(100, desc="encode", unit="img", every_s=10.0) as bar,
    ):
        clock.t += 4.0
        bar.update(20)  # 4 s: no line yet
        clock.t += 6.0
        bar.update(30)  # 10 s: 50 done, 5 img/s, 50 left -> 10 s
        clock.t += 5.0
        bar.update(50)  # 15 s: under 10 s since the last line
    lines = [r.getMessage() for r in caplog.records if r.name == "odh_core.progress"]
    assert lines == [
        "encode: 50/100 img (50%), 5.0 img/s, ~10s left",
        "encode: 100/100 img (100%), 6.7 img/s, 15s",
    ]


def test_log_progress_counts_from_initial(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from odh_core import progress

    clock = _Clock()
    monkeypatch.setattr(progress, "time", SimpleNamespace(perf_counter=clock))
    with (
        caplog.at_level(logging.INFO, logger="odh_core.progress"),
        progress.LogProgress(4, desc="build shards", unit="shard", initial=2) as bar,
    ):
        clock.t += 2.0
        bar.update(1)
        bar.update(1)
    # 2 reused shards are not part of the rate: 2 shards in 2 s
    assert caplog.records[-1].getMessage() == "build shards: 4/4 shard (100%), 1.0 shard/s, 2s"


def test_log_progress_does_not_repeat_the_last_line(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from odh_core import progress

    clock = _Clock()
    monkeypatch.setattr(progress, "time", SimpleNamespace(perf_counter=clock))
    with (
        caplog.at_level(logging.INFO, logger="odh_core.progress"),
        progress.LogProgress(8, desc="encode", unit="img", every_s=10.0) as bar,
    ):
        clock.t += 16.0
        bar.update(8)  # one batch with every image, after the interval: logged here only
    assert [r.getMessage() for r in caplog.records] == ["encode: 8/8 img (100%), 0.5 img/s, 16s"]


def test_progress_bar_is_a_log_off_a_terminal_and_rejects_a_bad_interval() -> None:
    from odh_core.progress import LogProgress, progress_bar

    # pytest captures stderr: not a terminal
    assert isinstance(progress_bar(10, desc="x", unit="it"), LogProgress)
    assert not isinstance(progress_bar(10, desc="x", unit="it", disable=True), LogProgress)
    with pytest.raises(ValueError, match="every_s"):
        LogProgress(10, desc="x", unit="it", every_s=0)


def test_worker_progress_lines_reach_the_driver(
    ray_local: None, caplog: pytest.LogCaptureFixture
) -> None:
    import ray

    from odh_core.progress_relay import ProgressRelay

    @ray.remote(num_cpus=0)
    def worker(queue: object, rank: int) -> None:
        from odh_core.progress_relay import forward_progress

        forward_progress(queue, rank)
        logging.getLogger("odh_core.stages").info("epoch 1/3 (warm-up) done: loss %.4f", 1.5)
        logging.getLogger("odh_core.stages").debug("not forwarded: below INFO")
        logging.getLogger("somewhere.else").warning("not forwarded: another logger")

    with caplog.at_level(logging.INFO):
        relay = ProgressRelay()
        try:
            ray.get([worker.remote(relay.queue, 0), worker.remote(relay.queue, 1)])
        finally:
            relay.close()  # drains what is queued before it returns
    lines = [r.getMessage() for r in caplog.records if r.name == "odh_core.stages"]
    assert lines == ["epoch 1/3 (warm-up) done: loss 1.5000"]  # rank 0 only


def test_odh_train_on_a_log_shows_epoch_lines(tmp_path: Path) -> None:
    """Not a unit test of the relay but its purpose: ``odh train`` output names every epoch."""
    pytest.importorskip("torch")
    import subprocess
    import sys

    images = tmp_path / "images"
    env_cmd = [sys.executable, "-m", "cluster.cli"]
    subprocess.run(
        [*env_cmd, "data", "synthetic", "--output", str(images), "--per-class", "12"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    out = subprocess.run(
        [*env_cmd, "train", "--images", str(images), "--output", str(tmp_path / "enc"),
         "--bits", "16", "--warmup-epochs", "1", "--stage1-epochs", "1", "--stage2-epochs", "0",
         "--batch-size", "8", "--threads", "1", "--num-cpus", "2"],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    done = re.findall(r"epoch (\d)/2 \([^)]*\) done: loss [\d.]+", out.stderr)
    assert done == ["1", "2"], out.stderr[-3000:]


def test_driver_view_turns_batch_lines_into_a_bar_on_a_terminal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from odh_core.progress_relay import DriverView

    view = DriverView(tty=True)
    name = "odh_core.stages"
    with caplog.at_level(logging.INFO, logger=name):
        view.show(name, logging.INFO, "epoch 2/8 (stage 1): batch 40/200 (20%), loss 0.9000, 15 s")
        view.show(name, logging.INFO, "epoch 2/8 (stage 1): batch 90/200 (45%), loss 0.8500, 30 s")
        assert view.title == "epoch 2/8 (stage 1)" and view.bar is not None
        assert view.shown == (90, 200, "0.8500")
        view.show(name, logging.INFO, "epoch 2/8 (stage 1) done: loss 0.8000, 60.0 s")
    assert view.bar is None  # closed before the epoch line
    assert [r.getMessage() for r in caplog.records] == [
        "epoch 2/8 (stage 1) done: loss 0.8000, 60.0 s"
    ]
    log_view = DriverView(tty=False)  # a log file: every line, as the worker wrote it
    with caplog.at_level(logging.INFO, logger=name):
        log_view.show(name, logging.INFO, "epoch 3/8 (stage 1): batch 1/2 (50%), loss 1.0, 1 s")
    assert log_view.bar is None
    assert caplog.records[-1].getMessage().startswith("epoch 3/8 (stage 1): batch 1/2")
