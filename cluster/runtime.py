"""Connecting to Ray: an embedded local cluster (laptops, CI) or an existing cluster by address.

Every `odh` subcommand that needs Ray goes through :func:`ray_runtime`, so the same command runs
on a 2-core laptop (embedded cluster, fractional CPUs) and on a real cluster (``--address`` or
``RAY_ADDRESS``) without code changes.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from odh_core.options import option

logger = logging.getLogger(__name__)

_QUIET_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
    # Data's progress bars fight with our own logging on a terminal; the job logs per stage instead.
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
}


@dataclass(frozen=True)
class RuntimeConfig:
    """Where Ray work runs.

    Attributes:
        address: ``None`` (or ``"local"``) starts an embedded cluster in this process; anything else
            (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``) connects to an existing cluster.
            ``RAY_ADDRESS`` is honoured when this is ``None``.
        num_cpus: CPUs the embedded cluster advertises (default: all cores of this machine).
    """

    address: str | None = option(
        None, help="Ray cluster address (default: $RAY_ADDRESS, else an embedded local cluster)"
    )
    num_cpus: int | None = option(None, help="CPUs of the embedded local cluster")

    def __post_init__(self) -> None:
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ValueError(f"RuntimeConfig.num_cpus must be >= 1, got {self.num_cpus}")


#: Ports for HAProxy's stats and metrics listeners: above Ray's worker ports (10002-19999) and
#: below Linux's ephemeral range (32768+), which Ray's processes take at random while HAProxy
#: starts (an OS-assigned free port was seen taken again before HAProxy could bind it).
_HAPROXY_PORTS = range(20000, 32768)


def _free_port(exclude: set[int] | None = None) -> int:
    import random

    exclude = exclude or set()
    for port in random.sample(_HAPROXY_PORTS, 200):
        if port in exclude:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_HAPROXY_PORTS} for HAProxy's listeners")


def proxy_env(proxy: str) -> dict[str, str]:
    """The environment of a Serve proxy mode (``serving.config.PROXY_MODES``) for an embedded
    cluster. HAProxy's config, admin socket and state go to a fresh directory and its stats and
    metrics listeners to free ports (Ray's defaults, /tmp/haproxy-serve and ports 8404/9101, would
    collide between two servers on one machine). Ray 2.60 binds those two listeners on all
    interfaces; the query API itself listens on ``HttpConfig.host``."""
    from serving.config import PROXY_MODES

    if proxy not in PROXY_MODES:
        raise ValueError(f"proxy must be one of {list(PROXY_MODES)}, got {proxy!r}")
    env = dict(PROXY_MODES[proxy])
    if proxy == "haproxy":
        base = tempfile.mkdtemp(prefix="odh-haproxy-")
        env.update(
            RAY_SERVE_HAPROXY_CONFIG_FILE_LOC=os.path.join(base, "haproxy.cfg"),
            RAY_SERVE_HAPROXY_SOCKET_PATH=os.path.join(base, "admin.sock"),
            RAY_SERVE_HAPROXY_SERVER_STATE_BASE=base,
            RAY_SERVE_HAPROXY_SERVER_STATE_FILE=os.path.join(base, "server-state"),
        )
        stats = _free_port()
        env["RAY_SERVE_HAPROXY_STATS_PORT"] = str(stats)
        env["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(_free_port({stats}))
    return env


def use_token_auth_if_available() -> None:
    """Send the Ray auth token when this machine has one (``$RAY_AUTH_TOKEN``,
    ``$RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``): clusters started with ``ray start``
    require it by default, and a client only sends it in token mode."""
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or Path(token_file).is_file():
        os.environ.setdefault("RAY_AUTH_MODE", "token")


@contextmanager
def ray_runtime(
    config: RuntimeConfig | None = None, *, env: Mapping[str, str] | None = None
) -> Iterator[None]:
    """Initialise Ray for a block; shut it down afterwards only if this block started it.

    ``env`` (e.g. :func:`proxy_env`) is set in this process before an embedded cluster starts,
    so every Ray process inherits it; an existing cluster keeps its own (a warning says so)."""
    config = config or RuntimeConfig()
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    address = config.address or os.environ.get("RAY_ADDRESS") or None
    if env and address in (None, "local"):
        os.environ.update(env)
    elif env:
        logger.warning("%s: set on the cluster's nodes, not by this client", sorted(env))
    if address not in (None, "local"):
        use_token_auth_if_available()  # read by Ray when it is first imported
    import ray

    if ray.is_initialized():
        yield
        return
    if address in (None, "local"):
        logger.info("starting an embedded local Ray cluster (num_cpus=%s)", config.num_cpus)
        ray.init(
            address="local",  # never join another cluster that happens to run on this machine
            num_cpus=config.num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    else:
        logger.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        if "ray.serve" in sys.modules:
            from ray import serve

            serve.shutdown()
        ray.shutdown()
