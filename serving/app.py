"""Assemble and run the Serve application: Ingress → QueryEncoder → Searcher groups.

``build_app(args)`` is the Serve application builder (``serve run serving.app:build_app
index=...`` or ``cluster/serve_config.yaml``); ``start_server`` / ``stop_server`` run it in-process
on the current Ray cluster.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import uuid
from collections.abc import Mapping
from typing import Any

from ray import serve

from serving.config import DEFAULT_HOST, DEFAULT_PORT, ServeConfig
from serving.layout import plan_groups, split_groups

__all__ = [
    "APP_NAME",
    "ServeConfig",
    "build_app",
    "deployment_failures",
    "split_groups",
    "start_server",
    "stop_server",
    "write_token_file",
]

logger = logging.getLogger(__name__)

APP_NAME: str = "odh"


def _encoder_input_side(checkpoint: str) -> int | None:
    """The input side (pixels) of the encoder checkpoint, from its ``config.json`` (``None`` if
    unreadable: the global image limits apply)."""
    import json

    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(str(checkpoint))
        with fs.open(f"{root.rstrip('/')}/config.json", "rb") as fh:
            side = json.loads(fh.read()).get("image_size")
        return int(side) if side else None
    except (OSError, ValueError, TypeError) as exc:
        logger.warning("no input size in %s (%r): the global image limits apply", checkpoint, exc)
        return None


def write_token_file(token: str) -> str:
    """Write ``token`` to a new file only this user can read (a private temp directory, mode
    0600); returns its path. How ``start_server(admin_token=...)`` hands the token to the ingress
    replica without env vars: on one machine. Multi-node: give ``admin_token_file`` on a path every
    node sees (a secret mount)."""
    import atexit
    import shutil
    import tempfile

    directory = tempfile.mkdtemp(prefix="odh-admin-")  # mode 0700
    path = os.path.join(directory, "token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    atexit.register(shutil.rmtree, directory, True)
    return path


def build_app(args: Mapping[str, Any] | ServeConfig) -> serve.Application:
    """Build the query application for one index directory.

    ``args`` is a :class:`~serving.config.ServeConfig` or a dict of its fields (as ``serve run`` /
    a Serve config file passes them), validated into one: unknown keys and bad values raise
    ``ValueError`` naming the field. See ``ServeConfig`` for every option and its default.

    Admission control: the ingress takes ``max_ongoing_requests`` at once per replica and
    ``max_queued_requests`` wait (every deployment's queue is bounded the same way); beyond
    that Serve answers 503 with ``Retry-After: retry_after_s`` at once. The admin token, if
    any, is read by the ingress replica from ``admin_token_file`` (never an env var).
    """
    from ray.serve.config import BackpressureConfig

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
    limits = cfg.limits(_encoder_input_side(str(checkpoint)) if checkpoint else None)
    # every deployment's caller-side queue is bounded: overload is a fast 503, never a long wait
    admission: dict[str, Any] = {"max_queued_requests": cfg.max_queued_requests}
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
                name=f"Searcher{g}",
                num_replicas=replicas,
                ray_actor_options=searcher_options,
                **admission,
            ).bind(index_dir, shards, num_threads, group=g, mmap_threshold_bytes=mmap_bytes)
            for g, shards in enumerate(layout)
        ]
    encoder = None
    if checkpoint:
        encoder_options = dict(actor_options)
        if device.startswith("cuda"):
            encoder_options["num_gpus"] = 1
        encoder = QueryEncoder.options(ray_actor_options=encoder_options, **admission).bind(
            str(checkpoint), device, 1, encoder_sha, cfg.inference
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
        "default_nprobe": manifest.search_defaults.get("nprobe"),
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
    return Ingress.options(
        ray_actor_options=ingress_options,
        max_ongoing_requests=cfg.max_ongoing_requests,
        max_queued_requests=cfg.max_queued_requests,
        backpressure_config=BackpressureConfig(status_code=503, retry_after_s=cfg.retry_after_s),
    ).bind(
        encoder,
        handles,
        info,
        timeout_s,
        encode_timeout_s,
        limits=limits.to_dict(),
        admin_token_file=cfg.admin_token_file,
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
    connected to (Serve starts one locally if there is none). The reload route is enabled by
    ``ServeConfig.admin_token_file``, or by ``admin_token`` (default: ``$ODH_ADMIN_TOKEN`` of this
    process), which is written to a private 0600 file for the ingress to read (one machine only:
    multi-node clusters give ``admin_token_file`` on a secret mount). With ``blocking=True`` it
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
    if token and cfg.admin_token_file is None:
        cfg = dataclasses.replace(cfg, admin_token_file=write_token_file(token))
    app = build_app(cfg)
    # One HTTP entry point: on a cluster whose nodes share an address (local multi-node) per-node
    # proxies would fight for the port; clusters use a RayService / load balancer instead.
    serve.start(proxy_location="HeadOnly", http_options={"host": host, "port": port})
    url = f"http://{host}:{port}{route_prefix.rstrip('/')}"
    logger.info("serving %s at %s", index_dir, url)
    try:
        serve.run(app, name=app_name, route_prefix=route_prefix, blocking=blocking)
    except RuntimeError as exc:  # "Deploying application odh failed: ..." without the cause
        causes = deployment_failures(app_name)
        if not causes:
            raise
        raise RuntimeError(f"{exc} {'; '.join(causes)}") from exc
    return url


def deployment_failures(app_name: str = APP_NAME) -> list[str]:
    """``"Deployment: <last exception line>"`` for every failed deployment of ``app_name`` (what
    Serve's deploy error leaves out: the replica constructor's exception, e.g. a checkpoint's
    ``CheckpointError: sha256 mismatch ...``)."""
    import re

    try:
        app_status = serve.status().applications.get(app_name)
    except Exception as exc:  # the controller may be gone already
        logger.warning("no Serve status for %s: %r", app_name, exc)
        return []
    if app_status is None:
        return []
    out = []
    pattern = re.compile(r"^\s*((?:[\w.]+\.)?\w*(?:Error|Exception)\b:.*)$", re.M)
    for name, dep in app_status.deployments.items():
        if str(dep.status) in ("HEALTHY", "DeploymentStatus.HEALTHY"):
            continue
        message = str(dep.message or "")
        found = [m for m in pattern.findall(message) if not m.startswith("RuntimeError: Traceback")]
        if found:
            out.append(f"{name}: {found[-1].strip()}")
    return out


def stop_server(app_name: str = APP_NAME) -> None:
    """Delete the application and shut Serve (controller and HTTP proxy) down."""
    try:
        serve.delete(app_name)
    finally:
        serve.shutdown()
