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


class ProgressRelay:
    """Driver side: a Ray queue the rank-0 worker logs to, re-logged here by a thread.

    The workers' stdout/stderr do not reach the driver (``log_to_driver=False``), so the
    epoch progress lines and epoch summaries of ``odh_core.stages`` travel this way instead, to
    the driver's terminal and to whatever log the driver writes."""

    def __init__(self) -> None:
        import threading

        from ray.util.queue import Queue

        self.queue = Queue(maxsize=1000, actor_options={"num_cpus": 0})
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
            logging.getLogger(name).log(level, "%s", message)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)
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
