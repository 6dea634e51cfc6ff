"""`odh cluster up|down|status`: a multi-node Ray cluster of local processes on one machine.

A head node and N worker nodes, each a separate ``ray start`` raylet with its own CPUs and optional
custom resources (e.g. ``searcher``), so that placement, node loss and multi-node scheduling can be
tried on a laptop exactly as on a real cluster. Every ``odh`` subcommand then takes
``--address 127.0.0.1:PORT`` (or ``RAY_ADDRESS``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cluster.runtime import use_token_auth_if_available
from odh_core.options import option

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalClusterConfig:
    """Shape of a local multi-node cluster.

    Attributes:
        workers: number of worker nodes besides the head.
        head_cpus: CPUs the head advertises (0 keeps work off the head, as on a real cluster).
        worker_cpus: CPUs each worker advertises (fractions of a core are fine: advertised CPUs are
            scheduling tokens, not pinned cores).
        worker_resources: custom resources per worker, e.g. ``{"searcher": 1}``.
        port: GCS port of the head.
        dashboard_port: port of the head's dashboard, which also serves the Jobs API that
            ``odh index --submit http://127.0.0.1:PORT`` uses.
    """

    workers: int = option(2, help="worker nodes besides the head")
    head_cpus: int = option(1, help="CPUs the head advertises (0 keeps work off the head)")
    worker_cpus: int = option(1, help="CPUs each worker advertises")
    worker_resources: dict[str, float] = option(
        help="custom resources per worker, e.g. '{\"searcher\": 1}'", default_factory=dict
    )
    port: int = option(6380, help="GCS port of the head")
    dashboard_port: int = option(8265, help="dashboard + Jobs API port of the head")

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.head_cpus < 0 or self.worker_cpus < 0:
            raise ValueError("head_cpus and worker_cpus must be >= 0")
        if not 1024 < self.port < 65536:
            raise ValueError(f"port must be in 1025..65535, got {self.port}")


def _ray_executable() -> str:
    candidate = Path(sys.executable).with_name("ray")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ray")
    if found is None:
        raise FileNotFoundError("the `ray` command is not installed next to this Python")
    return found


def _run(args: list[str]) -> None:
    logger.info("$ %s", " ".join(args))
    # Nodes (and the jobs they run) find `odh` and `python` of this environment first.
    if args[1:3] != ["start", "--head"]:  # the head creates the token; everyone else sends it
        use_token_auth_if_available()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args[:3])} failed ({proc.returncode}):\n{proc.stderr[-2000:]}"
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _node_ports() -> list[str]:
    """Per-node ports: several raylets share this machine, so the fixed defaults would clash."""
    return [
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
    ]


def cluster_up(config: LocalClusterConfig) -> str:
    """Start the head and the worker nodes; returns the address to pass as ``--address``."""
    ray = _ray_executable()
    address = f"127.0.0.1:{config.port}"
    _run(
        [
            ray, "start", "--head", f"--port={config.port}", "--node-ip-address=127.0.0.1",
            f"--num-cpus={config.head_cpus}", "--include-dashboard=true",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={config.dashboard_port}",
            "--disable-usage-stats", *_node_ports(),
        ]
    )  # fmt: skip
    for _ in range(config.workers):
        args = [ray, "start", f"--address={address}", "--node-ip-address=127.0.0.1",
                f"--num-cpus={config.worker_cpus}", *_node_ports()]  # fmt: skip
        if config.worker_resources:
            args.append(f"--resources={json.dumps(config.worker_resources)}")
        _run(args)
    logger.info("local cluster up at %s: head + %d workers %s", address, config.workers,
                json.dumps(asdict(config)))  # fmt: skip
    return address


def cluster_status(address: str) -> list[dict[str, Any]]:
    """Alive nodes of the cluster at ``address`` with their resources."""
    use_token_auth_if_available()  # before Ray is imported: it reads the mode once
    import ray

    ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        return [
            {
                "node_id": node["NodeID"],
                "address": node["NodeManagerAddress"],
                "alive": node["Alive"],
                "resources": node["Resources"],
            }
            for node in ray.nodes()
            if node["Alive"]
        ]
    finally:
        ray.shutdown()


def _cmdlines() -> dict[int, bytes]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:  # the process ended while we looked
                continue
    return out


def _cluster_processes(port: int) -> list[int]:
    """PIDs of the Ray processes of the cluster whose GCS listens on ``port``: every process
    that names that GCS address, or the session directory of a process that does."""
    by_port = re.compile(rb"(--gcs_server_port=%d\b|address=\S+:%d\b)" % (port, port))
    cmdlines = _cmdlines()
    sessions = {
        m.group(0)
        for cmd in cmdlines.values()
        if by_port.search(cmd)
        for m in re.finditer(rb"session_\d{4}-\d\d-\d\d_[\d_-]+", cmd)
    }
    return sorted(
        pid
        for pid, cmd in cmdlines.items()
        if by_port.search(cmd) or any(session in cmd for session in sessions)
    )


def cluster_down(port: int = 6380, grace_s: float = 10.0) -> int:
    """Stop the local cluster on ``port`` (only its processes; other Ray clusters on this machine
    are left alone). Returns how many processes were signalled."""
    import signal
    import time

    pids = _cluster_processes(port)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.2)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    logger.info("stopped %d processes of the local cluster on port %d", len(pids), port)
    return len(pids)
