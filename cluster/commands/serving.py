"""`odh serve` and `odh query`: the query API."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from cluster.commands.args import add_runtime_args, runtime

logger = logging.getLogger("odh")


def cmd_serve(args: argparse.Namespace) -> int:
    import time

    from serving.app import start_server

    with runtime(args):
        url = start_server(
            args.index,
            host=args.host,
            port=args.port,
            groups=args.groups,
            replicas=args.replicas,
            placement=args.placement,
            num_cpus=args.replica_cpus,
            timeout_s=args.timeout_s,
            device=args.device,
        )
        logger.info("serving %s at %s (Ctrl-C stops)", args.index, url)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            logger.info("stopping")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from cluster.report import format_hits
    from serving.client import ODHClient

    client = ODHClient(args.url, timeout=args.timeout)
    opts = {
        "k": args.k,
        "nprobe": args.nprobe,
        "max_distance": args.max_distance,
        "require_all": args.require_all,
    }
    if args.image:
        names = list(args.image)
        result = client.search(images=[Path(p).read_bytes() for p in args.image], **opts)
    elif args.code:
        names = list(args.code)
        result = client.search(codes=list(args.code), **opts)
    else:
        names = [str(i) for i in args.id]
        result = client.search(ids=list(args.id), **opts)
    if args.json:
        sys.stdout.write(json.dumps(dataclasses.asdict(result), indent=2) + "\n")
    else:
        sys.stdout.write(format_hits(names, result) + "\n")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to the `odh` parser."""
    p = sub.add_parser("serve", help="serve an index over HTTP with Ray Serve (blocks)")
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--groups", type=int, default=1, help="searcher groups")
    p.add_argument("--replicas", type=int, default=1, help="replicas per searcher group")
    p.add_argument(
        "--placement",
        choices=["split", "node", "ingress"],
        default="split",
        help="split: shards cut into --groups; node: one group per manifest shard group; "
        "ingress: the ingress holds every shard (no search hop, one node)",
    )
    p.add_argument("--replica-cpus", type=float, default=0.25, help="CPUs per Serve replica")
    p.add_argument("--timeout-s", type=float, default=5.0, help="per-group deadline")
    p.add_argument("--device", default="cpu", help="query encoder device (cpu, cuda)")
    add_runtime_args(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("query", help="query a running server")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", nargs="+", help="image files")
    what.add_argument("--code", nargs="+", help="codes as hex strings")
    what.add_argument("--id", nargs="+", type=int, help="indexed ids")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--nprobe", type=int, default=None)
    p.add_argument(
        "--max-distance",
        type=int,
        default=None,
        help="only hits with Hamming distance <= this (still at most k)",
    )
    p.add_argument(
        "--require-all", action="store_true", help="fail (503) instead of a partial answer"
    )
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_query)
