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
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    embedded = address in (None, "local")
    if env and embedded:
        os.environ.update(env)
    elif env:
        logger.warning("%s: set on the cluster's nodes, not by this client", sorted(env))
    if not embedded:
        use_token_auth_if_available()  # read by Ray when it is first imported
    else:
        # the embedded cluster is this machine's alone: its node address (which Ray's services
        # advertise and bind to) is loopback, not the host's address. Ray reads this when it is
        # first imported (and its processes inherit it); _loopback_node_ip covers a late call.
        os.environ.setdefault(_LOOPBACK_ENV, "0")
    import ray

    if ray.is_initialized():
        yield
        return
    children: list[Any] = []
    if embedded:
        logger.info("starting an embedded local Ray cluster (num_cpus=%s)", config.num_cpus)
        _loopback_node_ip()
        ray.init(
            address="local",  # never join another cluster that happens to run on this machine
            num_cpus=config.num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _node_ip_address=LOOPBACK,
        )
        children = _child_processes()
    else:
        logger.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        if "ray.serve" in sys.modules:
            from ray import serve

            serve.shutdown()
        if embedded:
            children = _child_processes() or children  # the cluster's processes, by pid
        ray.shutdown()
        _reap(children)


#: The address of the embedded cluster's node.
LOOPBACK = "127.0.0.1"
#: Ray's switch between "a node reachable from other hosts" (1, Linux default) and loopback (0).
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _loopback_node_ip() -> None:
    """Make Ray resolve this node's address to loopback even when it was imported before
    ``ray_runtime`` set the environment (``ray.init(_node_ip_address="127.0.0.1")`` alone is
    turned back into the host address by Ray)."""
    try:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    except (ImportError, AttributeError):  # pragma: no cover - a Ray without the switch
        logger.warning("cannot pin the embedded Ray cluster to loopback on this Ray version")


def _child_processes() -> list[Any]:
    """This process's child processes (the embedded cluster: GCS, raylet, agents, workers)."""
    try:
        import psutil

        return list(psutil.Process().children(recursive=True))
    except Exception:  # pragma: no cover - psutil missing or the process table unreadable
        return []


def _reap(processes: list[Any], grace_s: float = 5.0) -> None:
    """After ``ray.shutdown``: wait up to ``grace_s`` for the embedded cluster's processes to
    exit, then terminate (and finally kill) the ones that linger — by pid, only those this
    process started (Ray's agents otherwise outlive ``odh serve`` by about a minute)."""
    if not processes:
        return
    import psutil

    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for proc in alive:
        try:
            logger.info("stopping lingering Ray process %d (%s)", proc.pid, proc.name())
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(alive, timeout=3.0)
    for proc in alive:
        with suppress(psutil.Error):
            proc.kill()
