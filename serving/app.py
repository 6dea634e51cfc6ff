"""Assemble and run the Serve application: Ingress → QueryEncoder → Searcher groups.

``build_app(args)`` is the Serve application builder (``serve run serving.app:build_app
index=...`` or ``cluster/serve_config.yaml``); ``start_server`` / ``stop_server`` run it in-process
on the current Ray cluster.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from typing import Any

from ray import serve

from serving.config import DEFAULT_HOST, DEFAULT_PORT, ServeConfig
from serving.layout import plan_groups, split_groups

__all__ = ["APP_NAME", "ServeConfig", "build_app", "split_groups", "start_server", "stop_server"]

logger = logging.getLogger(__name__)

APP_NAME: str = "odh"


def build_app(
    args: Mapping[str, Any] | ServeConfig, *, ingress_env: Mapping[str, str] | None = None
) -> serve.Application:
    """Build the query application for one index directory.

    ``args`` is a :class:`~serving.config.ServeConfig` or a dict of its fields (as ``serve run`` /
    a Serve config file passes them), validated into one: unknown keys and bad values raise
    ``ValueError`` naming the field. See ``ServeConfig`` for every option and its default.

    ``ingress_env``: environment variables of the ingress replica (``start_server`` passes
    ``ODH_ADMIN_TOKEN`` this way).
    """
    from indexer.manifest import load_manifest
    from serving.ingress import Ingress
    from serving.query_encoder import QueryEncoder
    from serving.searcher import Searcher

    cfg = ServeConfig.from_dict(args)
    index_dir = cfg.index
    groups = cfg.groups
    replicas = cfg.replicas
    placement = cfg.placement
    num_cpus = cfg.num_cpus
    searcher_cpus = cfg.effective_searcher_cpus
    num_threads = cfg.effective_num_threads
    timeout_s = cfg.timeout_s
    encode_timeout_s = cfg.effective_encode_timeout_s
    mmap_mb = cfg.mmap_threshold_mb
    resource = cfg.searcher_resource
    device = cfg.device

    manifest, digest = load_manifest(index_dir)
    layout = plan_groups(manifest, groups, placement)
    checkpoint = cfg.checkpoint or manifest.encoder_checkpoint
    encoder_sha = _verified_encoder_sha(checkpoint, manifest.encoder_sha256)
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
            str(checkpoint), device, 1, encoder_sha
        )
    else:
        logger.warning("index %s names no encoder checkpoint: no image queries", index_dir)
    info = {
        "n_bits": int(manifest.n_bits),
        "generation": int(manifest.generation),
        "digest": digest,
        "encoder_sha256": encoder_sha,
        "home": index_dir,
        "deploy_id": uuid.uuid4().hex,
        "reload_roots": cfg.reload_roots,
        "nlist": int(manifest.nlist),
        "ntotal": int(sum(int(e.ntotal) for e in manifest.shards)),
        "shards": len(manifest.shards),
        "group_shards": layout,
        "encoder": str(checkpoint) if checkpoint else None,
        "index": index_dir,
        "replicas": replicas,
        "placement": placement,
        "images": cfg.images,
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


def _verified_encoder_sha(checkpoint: str | None, expected: str | None) -> str | None:
    """The checkpoint's sha256, checked against the manifest's (ValueError before deploying: a
    mismatch would otherwise only show in a replica's log)."""
    if not checkpoint:
        return expected
    from odh_core.checkpoint import checkpoint_sha256

    sha = checkpoint_sha256(str(checkpoint))
    if expected is not None and sha != expected:
        raise ValueError(
            f"checkpoint {checkpoint} has sha256 {sha}, but the index was encoded with "
            f"{expected} (manifest encoder.sha256): query codes would not match the index"
        )
    return sha


def start_server(
    config: ServeConfig | str,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    route_prefix: str = "/",
    blocking: bool = False,
    admin_token: str | None = None,
    app_name: str = APP_NAME,
    **options: Any,
) -> str:
    """Start Serve's HTTP proxy on ``host:port``, deploy the app as ``app_name``; returns the
    base URL.

    ``config`` is a :class:`ServeConfig`, or the index directory with ``ServeConfig`` fields as
    keywords (``groups=2, placement="ingress"``) — not both. Uses the Ray cluster this process is
    connected to (Serve starts one locally if there is none). ``admin_token`` (default:
    ``$ODH_ADMIN_TOKEN`` of this process) enables the reload route. With ``blocking=True`` it
    serves until interrupted.
    """
    if not route_prefix.startswith("/"):
        raise ValueError(f"route_prefix must start with '/', got {route_prefix!r}")
    if isinstance(config, ServeConfig):
        if options:
            raise TypeError(
                "start_server: give a ServeConfig or an index with ServeConfig fields as "
                f"keywords, not both (got {sorted(options)})"
            )
        cfg = config
    else:
        cfg = ServeConfig.from_dict({"index": config, **options})
    index_dir = cfg.index
    token = admin_token if admin_token is not None else os.environ.get("ODH_ADMIN_TOKEN")
    app = build_app(cfg, ingress_env={"ODH_ADMIN_TOKEN": token} if token else None)
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
