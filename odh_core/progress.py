"""Training progress on rank 0: a tqdm bar on a terminal, else periodic log lines, then one
line per epoch with the loss, the validation mAP and the time left."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

logger = logging.getLogger("odh_core.stages")  # the training loop's logger, as before

__all__ = ["EpochProgress"]


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
            if not logger.handlers:
                handler = logging.StreamHandler(sys.stderr)
                handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
                logger.addHandler(handler)
            logger.setLevel(logging.INFO)

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
            logger.info(
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
            logger.info("%s", line)


def _duration(seconds: float) -> str:
    """``75`` → ``1m15s``; ``3725`` → ``1h02m``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
