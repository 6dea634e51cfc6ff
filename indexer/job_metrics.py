"""Prometheus metrics of a batch job (prometheus-client, one fresh registry per job).

Names are a contract (docs/architecture.md, "Metrics"): ``odh_job_rows_total{stage,outcome}``,
``odh_job_bytes_total{stage}``, ``odh_job_stage_seconds{stage}``. Written as ``metrics.prom`` in
the job's output directory and optionally pushed to a Pushgateway.
"""

from __future__ import annotations

import logging
from typing import Any

from indexer import storage

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.prom"


class JobMetrics:
    """Counters and gauges of one job run, in their own ``CollectorRegistry``."""

    def __init__(self, job: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.job = job
        self.registry = CollectorRegistry()
        self.rows = Counter(
            "odh_job_rows_total",
            "Rows handled by a batch job stage, by outcome (read/encoded/rejected).",
            ["stage", "outcome"],
            registry=self.registry,
        )
        self.bytes = Counter(
            "odh_job_bytes_total",
            "Bytes handled by a batch job stage.",
            ["stage"],
            registry=self.registry,
        )
        self.seconds = Gauge(
            "odh_job_stage_seconds",
            "Wall-clock seconds of a batch job stage.",
            ["stage"],
            registry=self.registry,
        )

    def add_rows(self, stage: str, outcome: str, n: int) -> None:
        if n:
            self.rows.labels(stage=stage, outcome=outcome).inc(n)

    def add_bytes(self, stage: str, n: int) -> None:
        if n:
            self.bytes.labels(stage=stage).inc(n)

    def set_seconds(self, stage: str, seconds: float) -> None:
        self.seconds.labels(stage=stage).set(seconds)

    def text(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def write(self, output: str, storage_options: dict[str, Any] | None = None) -> str:
        """Write ``metrics.prom`` into ``output``; returns its URI."""
        from prometheus_client import write_to_textfile

        uri = storage.join(output, METRICS_FILE)
        fs, path = storage.url_to_fs(uri, storage_options)
        if storage.is_local(fs):
            write_to_textfile(path, self.registry)
        else:
            storage.write_bytes_atomic(uri, self.text(), storage_options)
        return uri

    def push(self, gateway: str) -> None:
        """Push to a Pushgateway (``host:port`` or URL); failures are logged, not raised."""
        from prometheus_client import push_to_gateway

        try:
            push_to_gateway(gateway, job=self.job, registry=self.registry, timeout=10)
            logger.info("pushed job metrics to %s", gateway)
        except OSError as exc:
            logger.warning("could not push metrics to %s: %s", gateway, exc)
