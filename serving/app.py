"""Assemble and run the Serve application: Ingress → QueryEncoder → Searcher groups.

``build_app(args)`` is the Serve application builder (``serve run serving.app:build_app
index=...`` or ``cluster/serve_config.yaml``); ``start_server`` / ``stop_server`` run it in-process
on the current Ray cluster.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from typing import Any

from ray import serve

from serving.layout import plan_groups, split_groups

__all__ = ["APP_NAME", "build_app", "split_groups", "start_server", "stop_server"]

logger = logging.getLogger(__name__)

DEFAULT_NUM_CPUS: float = 0.25
DEFAULT_TIMEOUT_S: float = 5.0
#: Local shard files at least this large are memory-mapped (MiB).
DEFAULT_MMAP_THRESHOLD_MB: float = 256.0
APP_NAME: str = "odh"


def _positive(args: Mapping[str, Any], name: str, default: float) -> float:
    value = float(args.get(name, default))
    if not value > 0:
        raise ValueError(f"build_app: {name} must be > 0, got {args.get(name)!r}")
    return value


def build_app(
    args: Mapping[str, Any], *, ingress_env: Mapping[str, str] | None = None
) -> serve.Application:
    """Build the query application for one index directory.

    Args (a dict, as ``serve run`` / a Serve config file passes them):
        index: index directory, local or ``s3://`` (required).
        groups: number of searcher groups with ``placement: split`` (default 1).
        replicas: replicas per searcher group (default 1).
        placement: ``split`` (shards cut into ``groups``), ``node`` (one group per
            ``ShardEntry.group`` of the manifest — all shards of a node in one group) or
            ``ingress`` (the ingress replica holds every shard: no search hop; one node).
        num_cpus: CPUs of the ingress and encoder replicas (default 0.25, fits on 2 CPUs).
        searcher_cpus: CPUs per searcher replica (default ``num_cpus``).
        num_threads: FAISS threads per searcher replica (default: ``searcher_cpus`` rounded
            down, at least 1 — matched to the replica's CPUs).
        searcher_resource: units of the custom resource ``searcher`` each searcher replica asks
            for (default 0: none), so replicas land only on nodes that advertise it.
        timeout_s: per-group deadline (default 5 s); encode_timeout_s: encoder deadline
            (default ``timeout_s``).
        device: torch device of the query encoder (default ``cpu``).
        checkpoint: override the encoder checkpoint named in the manifest.
        mmap_threshold_mb: memory-map local shard files at least this large (default 256).
        images: image set whose bytes ``GET /v1/images/{id}`` and the search page show
            (default: the one the index was encoded from, per its manifest's provenance).

    ``ingress_env``: environment variables of the ingress replica (``start_server`` passes
    ``ODH_ADMIN_TOKEN`` this way).
    """
    from indexer.manifest import read_manifest
    from serving.ingress import Ingress
    from serving.query_encoder import QueryEncoder
    from serving.searcher import Searcher

    known = {
        "index",
        "groups",
        "replicas",
        "placement",
        "num_cpus",
        "searcher_cpus",
        "num_threads",
        "searcher_resource",
        "timeout_s",
        "encode_timeout_s",
        "device",
        "checkpoint",
        "mmap_threshold_mb",
        "images",
    }
    unknown = sorted(set(args) - known)
    if unknown:
        raise ValueError(f"build_app: unknown argument(s) {unknown}; known: {sorted(known)}")
    if not args.get("index"):
        raise ValueError("build_app: 'index' (index directory) is required")
    index_dir = str(args["index"])
    groups = int(args.get("groups", 1))
    replicas = int(args.get("replicas", 1))
    if replicas < 1:
        raise ValueError(f"build_app: replicas must be >= 1, got {replicas}")
    placement = str(args.get("placement", "split"))
    num_cpus = _positive(args, "num_cpus", DEFAULT_NUM_CPUS)
    searcher_cpus = _positive(args, "searcher_cpus", num_cpus)
    num_threads = int(args.get("num_threads", max(1, math.floor(searcher_cpus))))
    if num_threads < 1:
        raise ValueError(f"build_app: num_threads must be >= 1, got {num_threads}")
    timeout_s = _positive(args, "timeout_s", DEFAULT_TIMEOUT_S)
    encode_timeout_s = _positive(args, "encode_timeout_s", timeout_s)
    mmap_mb = float(args.get("mmap_threshold_mb", DEFAULT_MMAP_THRESHOLD_MB))
    resource = float(args.get("searcher_resource", 0))
    device = str(args.get("device", "cpu"))

    manifest = read_manifest(index_dir)
    layout = plan_groups(manifest, groups, placement)
    checkpoint = args.get("checkpoint") or manifest.encoder_checkpoint
    actor_options: dict[str, Any] = {"num_cpus": num_cpus}
    searcher_options: dict[str, Any] = {"num_cpus": searcher_cpus}
    if resource > 0:
        searcher_options["resources"] = {"searcher": resource}

    from serving.local_group import LocalGroupSpec

    mmap_bytes = int(mmap_mb * 2**20)
    handles: list[Any]
    if placement == "ingress":  # the ingress holds the shards: no search hop
        handles = [LocalGroupSpec(index_dir, tuple(layout[0]), num_threads, 0, mmap_bytes)]
        replicas = 1  # the ingress replica is the group's only replica
    else:
        handles = [
            Searcher.options(
                name=f"Searcher{g}", num_replicas=replicas, ray_actor_options=searcher_options
            ).bind(index_dir, shards, num_threads, group=g, mmap_threshold_bytes=mmap_bytes)
            for g, shards in enumerate(layout)
        ]
    encoder = None
    if checkpoint:
        encoder_options = dict(actor_options)
        if device.startswith("cuda"):
            encoder_options["num_gpus"] = 1
        encoder = QueryEncoder.options(ray_actor_options=encoder_options).bind(
            str(checkpoint), device, 1
        )
    else:
        logger.warning("index %s names no encoder checkpoint: no image queries", index_dir)
    info = {
        "n_bits": int(manifest.n_bits),
        "generation": int(manifest.generation),
        "nlist": int(manifest.nlist),
        "ntotal": int(sum(int(e.ntotal) for e in manifest.shards)),
        "shards": len(manifest.shards),
        "group_shards": layout,
        "encoder": str(checkpoint) if checkpoint else None,
        "index": index_dir,
        "replicas": replicas,
        "placement": placement,
        "images": str(args["images"]) if args.get("images") else None,
    }
    logger.info(
        "odh app: %d shards in %d groups × %d replicas, %d bits, %d FAISS threads",
        len(manifest.shards),
        len(layout),
        replicas,
        info["n_bits"],
        num_threads,
    )
    ingress_options = dict(actor_options)
    if placement == "ingress":  # it searches too: give it the searcher's CPUs
        ingress_options["num_cpus"] = max(num_cpus, searcher_cpus)
    if ingress_env:
        ingress_options["runtime_env"] = {"env_vars": dict(ingress_env)}
    return Ingress.options(ray_actor_options=ingress_options).bind(
        encoder, handles, info, timeout_s, encode_timeout_s
    )


def start_server(
    index_dir: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    groups: int = 1,
    route_prefix: str = "/",
    blocking: bool = False,
    num_cpus: float = DEFAULT_NUM_CPUS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    device: str = "cpu",
    replicas: int = 1,
    placement: str = "split",
    num_threads: int | None = None,
    extra_args: Mapping[str, Any] | None = None,
    admin_token: str | None = None,
    app_name: str = APP_NAME,
) -> str:
    """Start Serve's HTTP proxy on ``host:port``, deploy the app as ``app_name``; returns the
    base URL.

    Uses the Ray cluster this process is connected to (Serve starts one locally if there is none).
    ``admin_token`` (default: ``$ODH_ADMIN_TOKEN`` of this process) enables the reload route.
    With ``blocking=True`` it serves until interrupted.
    """
    if not route_prefix.startswith("/"):
        raise ValueError(f"route_prefix must start with '/', got {route_prefix!r}")
    args: dict[str, Any] = {
        "index": index_dir,
        "groups": groups,
        "replicas": replicas,
        "placement": placement,
        "num_cpus": num_cpus,
        "timeout_s": timeout_s,
        "device": device,
    }
    if num_threads is not None:
        args["num_threads"] = num_threads
    args.update(extra_args or {})
    token = admin_token if admin_token is not None else os.environ.get("ODH_ADMIN_TOKEN")
    app = build_app(args, ingress_env={"ODH_ADMIN_TOKEN": token} if token else None)
    # One HTTP entry point: on a cluster whose nodes share an address (local multi-node) per-node
    # proxies would fight for the port; clusters use a RayService / load balancer instead.
    serve.start(proxy_location="HeadOnly", http_options={"host": host, "port": port})
    url = f"http://{host}:{port}{route_prefix.rstrip('/')}"
    logger.info("serving %s at %s", index_dir, url)
    serve.run(app, name=app_name, route_prefix=route_prefix, blocking=blocking)
    return url


def stop_server(app_name: str = APP_NAME) -> None:
    """Delete the application and shut Serve (controller and HTTP proxy) down."""
    try:
        serve.delete(app_name)
    finally:
        serve.shutdown()
