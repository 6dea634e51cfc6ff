"""`odh serve` and `odh query`: the query API."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from odh_core.options import option
from serving.config import DEFAULT_HOST, DEFAULT_PORT

if TYPE_CHECKING:
    from cluster.runtime import RuntimeConfig
    from serving.config import HttpConfig, ServeConfig

logger = logging.getLogger("odh")


@dataclass(frozen=True)
class QueryConfig:
    """One search request to a running server: by image files, codes or indexed ids."""

    url: str = option(f"http://{DEFAULT_HOST}:{DEFAULT_PORT}", help="base URL of the query API")
    image: tuple[str, ...] | None = option(None, help="image files")
    code: tuple[str, ...] | None = option(None, help="codes as hex strings")
    id: tuple[int, ...] | None = option(None, help="indexed ids")
    k: int = option(10, help="hits per query", flag="-k")
    nprobe: int | None = option(None, help="IVF lists probed (default: the server's)")
    max_distance: int | None = option(
        None, help="only hits with Hamming distance <= this (still at most k)"
    )
    require_all: bool = option(False, help="fail (503) instead of a partial answer")
    timeout: float = option(30.0, help="HTTP timeout (s)")
    json: bool = option(False, help="print JSON instead of a table")

    def __post_init__(self) -> None:
        given = [name for name in ("image", "code", "id") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(
                f"QueryConfig: give exactly one of --image, --code, --id (got {given or 'none'})"
            )
        if self.k < 1:
            raise ValueError(f"QueryConfig.k must be >= 1, got {self.k}")


def cmd_serve(config: ServeConfig, http: HttpConfig, runtime: RuntimeConfig) -> int:
    import time

    from cluster.runtime import proxy_env, ray_runtime
    from serving.app import start_server

    with ray_runtime(runtime, env=proxy_env(http.proxy)):
        try:
            url = start_server(config, host=http.host, port=http.port)
        except RuntimeError as exc:  # Serve's deploy failure: a traceback that hides the cause
            cause = deploy_cause(exc)
            logger.debug("deploy failure", exc_info=True)
            raise ValueError(f"odh serve: the application failed to deploy: {cause}") from None
        logger.info(
            "serving %s at %s (%s proxy); open %s/ for the search page (Ctrl-C stops)",
            config.index, url, http.proxy, url.rstrip("/"),
        )  # fmt: skip
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            logger.info("stopping")
    return 0


def deploy_cause(exc: BaseException) -> str:
    """The cause of a failed Serve deployment in one line: the last exception line of the
    replica's traceback (e.g. ``CheckpointError: sha256 mismatch for ...``), not the wrapper."""
    import re

    text = str(exc)
    found = re.findall(r"^\s*((?:[\w.]+\.)?\w*(?:Error|Exception|Failure)\b:.*)$", text, re.M)
    if found:
        return found[-1].strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def cmd_query(config: QueryConfig) -> int:
    from cluster.report import format_hits
    from serving.client import ODHClient

    client = ODHClient(config.url, timeout=config.timeout)
    opts = {
        "k": config.k,
        "nprobe": config.nprobe,
        "max_distance": config.max_distance,
        "require_all": config.require_all,
    }
    if config.image:
        names = list(config.image)
        result = client.search(images=[Path(p).read_bytes() for p in config.image], **opts)
    elif config.code:
        names = list(config.code)
        result = client.search(codes=list(config.code), **opts)
    else:
        names = [str(i) for i in config.id or ()]
        result = client.search(ids=list(config.id or ()), **opts)
    if config.json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(format_hits(names, result) + "\n")
    return 0
