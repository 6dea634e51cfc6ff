"""`odh bench`, `odh cluster up|status|down`, `odh demo`: operating the system."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from cluster.local_cluster import LocalClusterConfig
from odh_core.options import option, option_like

if TYPE_CHECKING:
    from cluster.demo import DemoConfig
    from cluster.runtime import RuntimeConfig

logger = logging.getLogger("odh")

#: Entry-point group of the benchmark modules (``[project.entry-points."odh.benchmarks"]``).
#: Each module has a frozen dataclass ``Config`` and ``run(config) -> int``.
BENCHMARK_GROUP = "odh.benchmarks"


@dataclass(frozen=True)
class ClusterStatusConfig:
    """Which cluster `odh cluster status` asks."""

    address: str | None = option(
        None, help="Ray cluster address (default: $RAY_ADDRESS, else auto)"
    )


@dataclass(frozen=True)
class ClusterDownConfig:
    """Which local cluster `odh cluster down` stops."""

    port: int = option_like(LocalClusterConfig, "port")


def benchmarks() -> dict[str, metadata.EntryPoint]:
    """The installed benchmark modules by name (the ``odh.benchmarks`` entry points)."""
    return {ep.name: ep for ep in metadata.entry_points(group=BENCHMARK_GROUP)}


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """``odh bench NAME [ARGS ...]``: the benchmark's own flags come from its ``Config``."""
    parser.add_argument("name", metavar="NAME", help="benchmark (an odh.benchmarks entry point)")
    parser.add_argument(
        "bench_args",
        nargs=argparse.REMAINDER,
        metavar="ARGS",
        help="the benchmark's flags (see odh bench NAME --help)",
    )


def cmd_bench(*, args: argparse.Namespace) -> int:
    from cluster.cli_config import parse_config

    found = benchmarks()
    if args.name not in found:
        raise ValueError(
            f"unknown benchmark {args.name!r}; installed: {', '.join(sorted(found)) or 'none'} "
            f"(entry-point group {BENCHMARK_GROUP!r})"
        )
    module: Any = found[args.name].load()
    description = (module.__doc__ or "").strip().split("\n")[0]
    config = parse_config(
        module.Config, args.bench_args, prog=f"odh bench {args.name}", description=description
    )
    return int(module.run(config))


def cmd_cluster_up(config: LocalClusterConfig) -> int:
    from cluster.local_cluster import cluster_up

    sys.stdout.write(f"{cluster_up(config)}\n")
    return 0


def cmd_cluster_status(config: ClusterStatusConfig) -> int:
    from cluster.local_cluster import cluster_status

    nodes = cluster_status(config.address or os.environ.get("RAY_ADDRESS") or "auto")
    sys.stdout.write(json.dumps(nodes, indent=2) + "\n")
    return 0


def cmd_cluster_down(config: ClusterDownConfig) -> int:
    from cluster.local_cluster import cluster_down

    cluster_down(config.port)
    return 0


def cmd_demo(config: DemoConfig, runtime: RuntimeConfig) -> int:
    from cluster.demo import run_demo

    return run_demo(config, runtime)
