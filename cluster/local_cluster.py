"""`odh cluster up|down|status`: a multi-node Ray cluster of local processes on one machine.

A head node and N worker nodes, each a separate ``ray start`` raylet with its own CPUs and optional
custom resources (e.g. ``searcher``), so that placement, node loss and multi-node scheduling can be
tried on a laptop exactly as on a real cluster. Every ``odh`` subcommand then takes
``--address 127.0.0.1:PORT`` (or ``RAY_ADDRESS``).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
    """

    workers: int = 2
    head_cpus: int = 1
    worker_cpus: int = 1
    worker_resources: dict[str, float] = field(default_factory=dict)
    port: int = 6380

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
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args[:3])} failed ({proc.returncode}):\n{proc.stderr[-2000:]}"
        )


def cluster_up(config: LocalClusterConfig) -> str:
    """Start the head and the worker nodes; returns the address to pass as ``--address``."""
    ray = _ray_executable()
    address = f"127.0.0.1:{config.port}"
    _run(
        [
            ray, "start", "--head", f"--port={config.port}", "--node-ip-address=127.0.0.1",
            f"--num-cpus={config.head_cpus}", "--include-dashboard=false", "--disable-usage-stats",
        ]
    )  # fmt: skip
    for _ in range(config.workers):
        args = [ray, "start", f"--address={address}", "--node-ip-address=127.0.0.1",
                f"--num-cpus={config.worker_cpus}"]  # fmt: skip
        if config.worker_resources:
            args.append(f"--resources={json.dumps(config.worker_resources)}")
        _run(args)
    logger.info("local cluster up at %s: head + %d workers %s", address, config.workers,
                json.dumps(asdict(config)))  # fmt: skip
    return address


def cluster_status(address: str) -> list[dict[str, Any]]:
    """Alive nodes of the cluster at ``address`` with their resources."""
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


def cluster_down() -> None:
    """Stop every Ray process started by ``ray start`` on this machine (``ray stop``)."""
    _run([_ray_executable(), "stop", "--force"])
