"""Training progress from a Ray Train worker to the driver's log.

Ray starts here with ``log_to_driver=False`` (worker output would otherwise flood the terminal),
so what the training worker logs — the per-epoch progress lines and the epoch summary of
``odh_core.stages`` (loss, validation mAP, time left) — never reached ``odh train`` or the demo.
:class:`ProgressRelay` (driver) owns a small Ray queue; :func:`forward_progress` (rank-0 worker)
adds a logging handler that puts those records on it; a driver thread logs them again under the
same logger names, so they reach the terminal and any log file the driver writes.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from typing import Any

#: Worker loggers whose records reach the driver.
FORWARDED_LOGGERS: tuple[str, ...] = ("odh_core.stages", "odh_core.distributed")


class _QueueHandler(logging.Handler):
    """Worker side of the progress forwarding: puts (logger, level, message) on a Ray queue."""

    def __init__(self, queue: Any) -> None:
        super().__init__(logging.INFO)
        self.queue = queue

    def emit(self, record: logging.LogRecord) -> None:
        # a full or gone queue never stops the training
        with contextlib.suppress(Exception):
            self.queue.put_nowait((record.name, record.levelno, record.getMessage()))


_BATCH_LINE = re.compile(
    r"^(?P<title>.+): batch (?P<n>\d+)/(?P<total>\d+) \(\d+%\), loss (?P<loss>\S+),"
)


class DriverView:
    """How the driver shows forwarded records: on a terminal the epoch's batch lines drive a
    tqdm bar (with the running loss) and the epoch summary is written above it; elsewhere every
    record is logged again under its own logger name."""

    def __init__(self, tty: bool | None = None) -> None:
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.bar: Any = None
        self.title: str | None = None
        self.shown: tuple[int, int, str] | None = None  # batches done, batches, loss

    def show(self, name: str, level: int, message: str) -> None:
        match = _BATCH_LINE.match(message) if self.tty else None
        if match is None:
            if self.tty and " done: " in message:
                self.close()
            logging.getLogger(name).log(level, "%s", message)
            return
        from tqdm import tqdm

        title, n, total = match["title"], int(match["n"]), int(match["total"])
        if self.bar is None or title != self.title:
            self.close()
            self.bar = tqdm(total=total, desc=title, unit="batch", leave=False)
            self.title = title
        self.shown = (n, total, match["loss"])
        self.bar.update(n - self.bar.n)
        self.bar.set_postfix(loss=match["loss"])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar, self.title = None, None


class ProgressRelay:
    """Driver side: a Ray queue the rank-0 worker logs to, re-logged here by a thread.

    The workers' stdout/stderr do not reach the driver (``log_to_driver=False``), so the
    epoch progress lines and epoch summaries of ``odh_core.stages`` travel this way instead, to
    the driver's terminal and to whatever log the driver writes."""

    def __init__(self) -> None:
        import threading

        from ray.util.queue import Queue

        self.queue = Queue(maxsize=1000, actor_options={"num_cpus": 0})
        self.view = DriverView()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="odh-train-progress", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        from ray.util.queue import Empty

        while True:
            try:
                name, level, message = self.queue.get(timeout=0.5)
            except Empty:
                if self._stop.is_set():
                    return
                continue
            except Exception:  # the queue actor is gone
                return
            self.view.show(name, level, message)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)
        self.view.close()
        self.queue.shutdown()


def forward_progress(queue: Any, rank: int) -> None:
    """On a training worker: send rank 0's progress and resume lines to the driver's relay."""
    if queue is None or rank != 0:
        return
    handler = _QueueHandler(queue)
    for name in FORWARDED_LOGGERS:
        log = logging.getLogger(name)
        log.addHandler(handler)
        log.setLevel(logging.INFO)
