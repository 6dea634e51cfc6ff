"""Arguments and helpers shared by several `odh` subcommands."""

from __future__ import annotations

import argparse
import json
from contextlib import AbstractContextManager

from indexer.converters.fashion_mnist import DEFAULT_SOURCE as DEFAULT_FASHION_MNIST_DIR
from indexer.converters.fashion_mnist import fashion_mnist_source

__all__ = ["DEFAULT_FASHION_MNIST_DIR", "fashion_mnist_source"]


def parse_storage_options(text: str | None) -> dict | None:
    """The JSON object given as ``--storage-options`` (fsspec options), or None."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--storage-options is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError("--storage-options must be a JSON object")
    return value


def runtime(args: argparse.Namespace) -> AbstractContextManager[None]:
    """The Ray runtime a command line asks for (``--address``, ``--num-cpus``)."""
    from cluster.runtime import RuntimeConfig, ray_runtime

    return ray_runtime(RuntimeConfig(address=args.address, num_cpus=args.num_cpus))


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    """``--address`` and ``--num-cpus`` of commands that run on Ray."""
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster address (default: $RAY_ADDRESS, else an embedded local cluster)",
    )
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded local cluster")


def add_data_args(p: argparse.ArgumentParser) -> None:
    """Output, split sizes and part size of the `odh data` converters."""
    p.add_argument("--output", required=True, help="image-set directory or s3:// prefix")
    p.add_argument("--query-per-class", type=int, default=None, help="query images per class")
    p.add_argument("--train-per-class", type=int, default=None, help="training images per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows-per-part", type=int, default=10_000, help="rows per part-*.parquet")
    p.add_argument("--storage-options", default=None, help="JSON fsspec storage options")
