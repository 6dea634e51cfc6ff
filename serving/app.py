"""Assemble and run the Serve application: Ingress → QueryEncoder → Searcher groups.

``build_app(args)`` is the Serve application builder
(``serve run serving.app:build_app index=...``); ``start_server`` / ``stop_server`` run it
in-process on the current Ray cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ray import serve

logger = logging.getLogger(__name__)

DEFAULT_NUM_CPUS: float = 0.25
DEFAULT_TIMEOUT_S: float = 5.0
APP_NAME: str = "odh"


def split_groups(n_shards: int, groups: int) -> list[list[int]]:
    """Split shard numbers ``0..n_shards-1`` into ``min(groups, n_shards)`` contiguous, balanced
    groups."""
    if n_shards < 1:
        raise ValueError(f"index has no shards (n_shards={n_shards})")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    groups = min(groups, n_shards)
    base, extra = divmod(n_shards, groups)
    out, start = [], 0
    for g in range(groups):
        size = base + (1 if g < extra else 0)
        out.append(list(range(start, start + size)))
        start += size
    return out


def build_app(args: Mapping[str, Any]) -> serve.Application:
    """Build the query application for one index directory.

    Args (a dict, as ``serve run`` passes them):
        index: index directory (required).
        groups: number of searcher groups (default 1).
        num_cpus: CPUs per replica (default 0.25, so everything fits on 2 CPUs).
        timeout_s: per-group deadline (default 5 s).
        device: torch device of the query encoder (default ``cpu``).
        num_threads: FAISS threads per searcher replica (default 1).
        checkpoint: override the encoder checkpoint named in the manifest.
    """
    from indexer.manifest import read_manifest
    from serving.ingress import Ingress
    from serving.query_encoder import QueryEncoder
    from serving.searcher import Searcher

    known = {"index", "groups", "num_cpus", "timeout_s", "device", "num_threads", "checkpoint"}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ValueError(f"build_app: unknown argument(s) {unknown}; known: {sorted(known)}")
    if not args.get("index"):
        raise ValueError("build_app: 'index' (index directory) is required")
    index_dir = str(args["index"])
    groups = int(args.get("groups", 1))
    num_cpus = float(args.get("num_cpus", DEFAULT_NUM_CPUS))
    timeout_s = float(args.get("timeout_s", DEFAULT_TIMEOUT_S))
    device = str(args.get("device", "cpu"))
    num_threads = int(args.get("num_threads", 1))
    if num_cpus <= 0:
        raise ValueError(f"num_cpus must be > 0, got {num_cpus}")

    manifest = read_manifest(index_dir)
    numbers = sorted(int(e.shard) for e in manifest.shards)
    layout = [[numbers[i] for i in part] for part in split_groups(len(numbers), groups)]
    checkpoint = args.get("checkpoint") or manifest.encoder_checkpoint
    actor_options = {"num_cpus": num_cpus}

    handles = [
        Searcher.options(name=f"Searcher{g}", ray_actor_options=actor_options).bind(
            index_dir, shards, num_threads
        )
        for g, shards in enumerate(layout)
    ]
    encoder = None
    if checkpoint:
        encoder = QueryEncoder.options(ray_actor_options=actor_options).bind(
            str(checkpoint), device, 1
        )
    else:
        logger.warning(
            "index %s names no encoder checkpoint: image queries are disabled", index_dir
        )
    info = {
        "n_bits": int(manifest.n_bits),
        "generation": int(manifest.generation),
        "nlist": int(manifest.nlist),
        "ntotal": int(sum(int(e.ntotal) for e in manifest.shards)),
        "shards": len(manifest.shards),
        "group_shards": layout,
        "encoder": str(checkpoint) if checkpoint else None,
        "index": index_dir,
    }
    logger.info(
        "odh app: %d shards in %d groups, %d bits",
        len(manifest.shards),
        len(layout),
        info["n_bits"],
    )
    return Ingress.options(ray_actor_options=actor_options).bind(encoder, handles, info, timeout_s)


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
) -> str:
    """Start Serve's HTTP proxy on ``host:port``, deploy the app as ``odh``; returns the base URL.

    Uses the Ray cluster this process is connected to (Serve starts one locally if there is none).
    With ``blocking=True`` it serves until interrupted.
    """
    if not route_prefix.startswith("/"):
        raise ValueError(f"route_prefix must start with '/', got {route_prefix!r}")
    app = build_app(
        {
            "index": index_dir,
            "groups": groups,
            "num_cpus": num_cpus,
            "timeout_s": timeout_s,
            "device": device,
        }
    )
    serve.start(http_options={"host": host, "port": port})
    url = f"http://{host}:{port}{route_prefix.rstrip('/')}"
    logger.info("serving %s at %s", index_dir, url)
    serve.run(app, name=APP_NAME, route_prefix=route_prefix, blocking=blocking)
    return url


def stop_server() -> None:
    """Delete the ``odh`` application and shut Serve (controller and HTTP proxy) down."""
    try:
        serve.delete(APP_NAME)
    finally:
        serve.shutdown()
