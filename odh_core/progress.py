"""Progress of long loops for a terminal and for a log file alike.

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

logger = logging.getLogger(__name__)

__all__ = ["LogProgress", "progress_bar"]


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
