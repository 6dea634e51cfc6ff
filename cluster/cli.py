"""The `odh` command line: one subcommand per pipeline stage, each mapped onto one stage function.

Subcommands live in ``cluster.commands.*`` (one module per area, each with ``register``). Heavy
imports (torch, ray, faiss) happen inside the handlers so that ``odh --help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from cluster.commands import data, jobs, ops, serving, train
from cluster.commands.args import fashion_mnist_source

__all__ = ["build_parser", "fashion_mnist_source", "main"]

logger = logging.getLogger("odh")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odh",
        description="ODH index: one-bit deep hashing image search on Ray, FAISS and Ray Serve.",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for module in (data, train, jobs, serving, ops):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        logger.error("%s", exc)
        logger.debug("details", exc_info=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
