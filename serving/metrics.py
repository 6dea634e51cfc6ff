"""Prometheus metrics of the query service, exported through Ray's metrics agent.

The names are a contract (docs/architecture.md, "Metrics"): dashboards and alert rules use them.
They are created with ``ray.serve.metrics`` (Counter/Histogram/Gauge with ``tag_keys``), which
adds the ``deployment``, ``replica`` and ``application`` tags, so Prometheus scraping Ray's
per-node metrics port sees one consistent series per replica (prefixed ``ray_``), however many
replicas and nodes there are. A process-local ``prometheus_client`` registry would instead need
its own port per replica and a service discovery for it.

``NullMetrics`` records nothing (the ingress logic used outside Ray, e.g. in unit tests).
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

#: Latency histogram buckets, seconds (0.5 ms … 10 s).
LATENCY_BOUNDARIES: list[float] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
]  # fmt: skip

REQUESTS = "odh_search_requests_total"
ERRORS = "odh_search_errors_total"
LATENCY = "odh_search_latency_seconds"
GROUP_LATENCY = "odh_group_latency_seconds"
PARTIAL = "odh_partial_results_total"
GENERATION = "odh_index_generation"
CODES = "odh_index_codes"

#: Values of the ``kind`` tag of ``odh_search_errors_total``.
ERROR_KINDS: tuple[str, ...] = (
    "bad_request",
    "bad_image",
    "unknown_id",
    "timeout",
    "internal",
    "overload",
)


class NullMetrics:
    """Accepts every record and keeps nothing."""

    def request(self, kind: str, status: str) -> None:
        """Count one search request (``status``: ok / client_error / server_error)."""

    def error(self, kind: str) -> None:
        """Count one error of ``kind`` (one of ``ERROR_KINDS``)."""

    def stage(self, stage: str, seconds: float) -> None:
        """Observe a per-stage latency (total / encode / search / merge)."""

    def group(self, group: int, seconds: float) -> None:
        """Observe the latency of one searcher group call."""

    def partial(self, group: int) -> None:
        """Count a response that misses ``group``."""

    def generation(self, generation: int) -> None:
        """Set the served manifest generation."""

    def codes(self, group: int, ntotal: int) -> None:
        """Set the number of codes a searcher group holds."""


class RayMetrics(NullMetrics):
    """The contract metrics as ``ray.serve.metrics`` objects (create inside a Serve replica)."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self._requests = metrics.Counter(
            REQUESTS, description="search requests", tag_keys=("kind", "status")
        )
        self._errors = metrics.Counter(ERRORS, description="errors by kind", tag_keys=("kind",))
        self._latency = metrics.Histogram(
            LATENCY,
            description="per-stage latency at the ingress",
            boundaries=LATENCY_BOUNDARIES,
            tag_keys=("stage",),
        )
        self._group_latency = metrics.Histogram(
            GROUP_LATENCY,
            description="latency of one searcher group call",
            boundaries=LATENCY_BOUNDARIES,
            tag_keys=("group",),
        )
        self._partial = metrics.Counter(
            PARTIAL, description="responses missing that group", tag_keys=("group",)
        )
        self._generation = metrics.Gauge(GENERATION, description="manifest generation served")
        self._codes = metrics.Gauge(
            CODES, description="codes held by a searcher group", tag_keys=("group",)
        )

    def request(self, kind: str, status: str) -> None:
        self._requests.inc(1, tags={"kind": kind, "status": status})

    def error(self, kind: str) -> None:
        self._errors.inc(1, tags={"kind": kind})

    def stage(self, stage: str, seconds: float) -> None:
        self._latency.observe(seconds, tags={"stage": stage})

    def group(self, group: int, seconds: float) -> None:
        self._group_latency.observe(seconds, tags={"group": str(group)})

    def partial(self, group: int) -> None:
        self._partial.inc(1, tags={"group": str(group)})

    def generation(self, generation: int) -> None:
        self._generation.set(generation)

    def codes(self, group: int, ntotal: int) -> None:
        self._codes.set(ntotal, tags={"group": str(group)})


def replica_metrics() -> Any:
    """``RayMetrics`` inside a Ray worker, else ``NullMetrics`` (never fails a replica)."""
    try:
        import ray

        if not ray.is_initialized():
            return NullMetrics()
        return RayMetrics()
    except Exception as exc:  # metrics must never take the service down
        logger.warning("metrics disabled: %r", exc)
        return NullMetrics()
