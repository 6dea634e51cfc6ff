"""`odh bench`, `odh cluster up|status|down`, `odh demo`: operating the system."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from cluster.commands.args import add_runtime_args, fashion_mnist_source

logger = logging.getLogger("odh")


def cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks import run_benchmark

    return run_benchmark(args.name, list(args.bench_args))


def cmd_cluster_up(args: argparse.Namespace) -> int:
    from cluster.local_cluster import LocalClusterConfig, cluster_up

    resources = json.loads(args.worker_resources) if args.worker_resources else {}
    address = cluster_up(
        LocalClusterConfig(
            workers=args.workers,
            head_cpus=args.head_cpus,
            worker_cpus=args.worker_cpus,
            worker_resources=resources,
            port=args.port,
            dashboard_port=args.dashboard_port,
        )
    )
    sys.stdout.write(f"{address}\n")
    return 0


def cmd_cluster_status(args: argparse.Namespace) -> int:
    from cluster.local_cluster import cluster_status

    nodes = cluster_status(args.address or os.environ.get("RAY_ADDRESS") or "auto")
    sys.stdout.write(json.dumps(nodes, indent=2) + "\n")
    return 0


def cmd_cluster_down(args: argparse.Namespace) -> int:
    from cluster.local_cluster import cluster_down

    cluster_down(args.port)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from cluster.demo import DemoConfig, run_demo

    config = DemoConfig(
        workdir=args.workdir,
        source=fashion_mnist_source(args.source),
        n_bits=args.bits,
        warmup_epochs=args.warmup_epochs,
        stage1_epochs=args.stage1_epochs,
        stage2_epochs=args.stage2_epochs,
        n_shards=args.shards,
        port=args.port,
        seed=args.seed,
    )
    return run_demo(config, address=args.address, num_cpus=args.num_cpus)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to the `odh` parser."""
    p = sub.add_parser("bench", help="run a benchmark module (benchmarks/NAME.py)")
    p.add_argument("name")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    p.set_defaults(func=cmd_bench)

    cl = sub.add_parser("cluster", help="a local multi-node Ray cluster (separate processes)")
    cl_sub = cl.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    p = cl_sub.add_parser("up", help="start a head and N worker nodes; prints the address")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--head-cpus", type=int, default=1)
    p.add_argument("--worker-cpus", type=int, default=1)
    p.add_argument("--worker-resources", default=None, help="JSON, e.g. '{\"searcher\": 1}'")
    p.add_argument("--port", type=int, default=6380, help="GCS port of the head")
    p.add_argument(
        "--dashboard-port", type=int, default=8265, help="dashboard + Jobs API port of the head"
    )
    p.set_defaults(func=cmd_cluster_up)
    p = cl_sub.add_parser("status", help="alive nodes and their resources")
    p.add_argument("--address", default=None, help="default: $RAY_ADDRESS, else auto")
    p.set_defaults(func=cmd_cluster_status)
    p = cl_sub.add_parser("down", help="stop the local cluster's processes (others are left alone)")
    p.add_argument("--port", type=int, default=6380, help="GCS port of the head")
    p.set_defaults(func=cmd_cluster_down)

    p = sub.add_parser("demo", help="the whole pipeline on Fashion-MNIST, locally")
    p.add_argument("--workdir", default="odh-data")
    p.add_argument("--source", default=None, help="Fashion-MNIST IDX directory")
    p.add_argument("--bits", type=int, default=64, choices=[16, 32, 64, 128])
    p.add_argument("--warmup-epochs", type=int, default=2)
    p.add_argument("--stage1-epochs", type=int, default=3)
    p.add_argument("--stage2-epochs", type=int, default=3)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--seed", type=int, default=0)
    add_runtime_args(p)
    p.set_defaults(func=cmd_demo)
