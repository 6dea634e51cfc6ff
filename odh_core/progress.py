"""Progress of long loops for a terminal and for a log file alike.

:class:`EpochProgress` reports training epochs (rank 0, logger ``odh_core.stages``, which the
driver relays: :mod:`odh_core.progress_relay`); :func:`progress_bar` wraps encode and build.

On a terminal :func:`progress_bar` is a tqdm bar. Anywhere else (``make demo > demo.log``, a job
log, CI) a tqdm bar is one endless line of carriage returns, so it logs a line every
``every_s`` seconds instead (``encode: 12000/70000 img (17%), 410 img/s, ~2m21s left``) and a
last one when the loop ends.
"""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)
_train_logger = logging.getLogger("odh_core.stages")  # the training loop's logger, as before

__all__ = ["EpochProgress", "LogProgress", "progress_bar"]


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class LogProgress:
    """The tqdm calls the loops use (``update``, context manager), as periodic log lines."""

    def __init__(
        self,
        total: int,
        *,
        desc: str,
        unit: str,
        initial: int = 0,
        every_s: float = 10.0,
        log: logging.Logger | None = None,
    ) -> None:
        if every_s <= 0:
            raise ValueError(f"LogProgress.every_s must be > 0, got {every_s}")
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self.start_n = initial
        self.every_s = every_s
        self.log = log or logger
        self.t0 = self.last = time.perf_counter()
        self._logged_n: int | None = None

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        rate = (self.n - self.start_n) / elapsed
        parts = [f"{self.desc}: {self.n}/{self.total} {self.unit}"]
        if self.total:
            parts[0] += f" ({100.0 * self.n / self.total:.0f}%)"
        parts.append(f"{rate:.1f} {self.unit}/s")
        if rate > 0 and self.total > self.n:
            parts.append(f"~{_duration((self.total - self.n) / rate)} left")
        else:
            parts.append(f"{_duration(elapsed)}")
        return ", ".join(parts)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            self._emit()

    def _emit(self) -> None:
        self._logged_n = self.n
        self.log.info("%s", self.line())

    def close(self) -> None:
        """The last line, unless the last update already logged this count."""
        if self._logged_n != self.n:
            self._emit()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()


def progress_bar(
    total: int,
    *,
    desc: str,
    unit: str,
    initial: int = 0,
    disable: bool = False,
    every_s: float = 10.0,
) -> Any:
    """A tqdm bar on a terminal, else a :class:`LogProgress` (``disable`` turns both off)."""
    from tqdm import tqdm

    if disable or sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=disable)
    return LogProgress(total, desc=desc, unit=unit, initial=initial, every_s=every_s)


class EpochProgress:
    """Progress of one epoch on rank 0: a tqdm bar with the running loss on a terminal, else a
    log line every ``_LINE_EVERY_S`` seconds (a log file or a Ray worker); then one epoch line
    with the loss, validation mAP and the time left. ``TQDM_DISABLE=1`` turns the bar off.

    The running loss is read from the accumulated tensor only when shown (no per-step sync)."""

    _LINE_EVERY_S = 15.0
    _BAR_EVERY_S = 0.5

    def __init__(self, ctx: Any, total_epochs: int) -> None:
        import sys

        self.enabled = ctx.rank == 0
        self.tty = self.enabled and sys.stderr.isatty()
        self.total_epochs = max(1, total_epochs)
        self.epoch_seconds: list[float] = []
        self._bar: Any = None
        if self.enabled and not self.tty and not logging.getLogger().handlers:
            # A Ray worker configures no logging: without a handler these lines would vanish.
            if not _train_logger.handlers:
                handler = logging.StreamHandler(sys.stderr)
                handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
                _train_logger.addHandler(handler)
            _train_logger.setLevel(logging.INFO)

    def start(self, title: str, n_batches: int) -> None:
        self.title, self.n_batches, self.t0 = title, n_batches, time.perf_counter()
        self.seen, self.last_show = 0, self.t0
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(total=n_batches, desc=title, unit="batch", leave=False)

    def step(self, total: Any, n: int) -> None:
        """After a batch: ``total`` is the summed loss (a tensor) over ``n`` batches."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._bar is not None:
            self._bar.update(n - self.seen)
            self.seen = n
            if now - self.last_show >= self._BAR_EVERY_S:
                self._bar.set_postfix(loss=f"{float(total) / max(n, 1):.4f}", refresh=False)
                self.last_show = now
        elif not self.tty and now - self.last_show >= self._LINE_EVERY_S:
            self.last_show = now
            _train_logger.info(
                "%s: batch %d/%d (%.0f%%), loss %.4f, %.0f s",
                self.title,
                n,
                self.n_batches,
                100.0 * n / max(self.n_batches, 1),
                float(total) / max(n, 1),
                now - self.t0,
            )

    def end(self, rec: dict[str, Any], best_map: float) -> None:
        """The epoch line: loss, validation mAP (best so far) and the time left."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if not self.enabled:
            return
        self.epoch_seconds.append(float(rec["epoch_s"]))
        done = int(rec["global_epoch"]) + 1
        left = max(0, self.total_epochs - done)
        eta = left * float(np.mean(self.epoch_seconds))
        parts = [f"{self.title} done: loss {rec['loss']:.4f}"]
        if "val_map" in rec:
            parts.append(f"val mAP {rec['val_map']:.4f} (best {max(best_map, rec['val_map']):.4f})")
        parts.append(f"{rec['epoch_s']:.1f} s")
        parts.append(f"{left} epoch{'s' if left != 1 else ''} left, ~{_duration(eta)}")
        line = ", ".join(parts)
        if self.tty:
            from tqdm import tqdm

            tqdm.write(line)
        else:
            _train_logger.info("%s", line)
