"""The `odh` command line, generated from the stage configs.

:data:`COMMANDS` is the command table: each entry names its subcommand, its one-line help, its
handler and the config classes whose fields become its flags (``cluster.cli_config``). Config
classes are named as ``"module:Class"`` and imported only when their command is parsed (or its
help shown), so ``odh --help`` imports no torch, Ray, FAISS or pyarrow. ``docs/cli.md`` is
rendered from the same table (``cluster.cli_doc``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cluster.cli_config import add_config_arguments, config_from_namespace
from cluster.commands import data, gc, jobs, ops, serving, train

__all__ = [
    "COMMANDS",
    "GROUPS",
    "Command",
    "build_parser",
    "command_parsers",
    "config_class",
    "main",
    "parse_command",
]

logger = logging.getLogger("odh")

DESCRIPTION = "ODH index: one-bit deep hashing image search on Ray, FAISS and Ray Serve."


@dataclass(frozen=True)
class Command:
    """One `odh` subcommand.

    ``configs``: ``"module:Class"`` names of the configs its flags come from; the handler gets
    one instance of each, in this order. ``arguments``: extra positional arguments (only
    ``odh bench NAME ARGS``); the handler then also gets the namespace as ``args=``.
    """

    path: tuple[str, ...]
    help: str
    handler: Callable[..., int]
    configs: tuple[str, ...] = ()
    arguments: Callable[[argparse.ArgumentParser], None] | None = None

    @property
    def name(self) -> str:
        return " ".join(self.path)


_RUNTIME = "cluster.runtime:RuntimeConfig"

#: Subcommands that group others, with their help.
GROUPS: dict[str, str] = {
    "data": "write an image set (Parquet parts + _dataset.json)",
    "cluster": "a local multi-node Ray cluster (separate processes)",
}

COMMANDS: tuple[Command, ...] = (
    Command(
        ("data", "fashion-mnist"),
        "convert the Fashion-MNIST IDX files",
        data.cmd_data,
        ("indexer.converters.configs:FashionMnistConfig",),
    ),
    Command(
        ("data", "synthetic"),
        "small class-structured images (tests, smoke runs)",
        data.cmd_data,
        ("indexer.converters.configs:SyntheticConfig",),
    ),
    Command(
        ("data", "cifar10"),
        "convert the CIFAR-10 python batches",
        data.cmd_data,
        ("indexer.converters.configs:Cifar10Config",),
    ),
    Command(
        ("data", "folder"),
        "an image folder with one subfolder per class",
        data.cmd_data,
        ("indexer.converters.configs:FolderConfig",),
    ),
    Command(
        ("data", "parquet"),
        "any Parquet data set, given a column mapping",
        data.cmd_data,
        ("indexer.converters.configs:ParquetConfig",),
    ),
    Command(
        ("train",),
        "train a hashing encoder with Ray Train",
        train.cmd_train,
        (
            "indexer.training:TrainJobConfig",
            "odh_core.config:TrainConfig",
            "odh_core.config:TrainRunConfig",
            _RUNTIME,
        ),
    ),
    Command(
        ("encode",),
        "encode an image set into code parts with Ray Data",
        jobs.cmd_encode,
        ("indexer.encode:EncodeConfig", "cluster.commands.jobs:EncodeRunConfig", _RUNTIME),
    ),
    Command(
        ("build",),
        "build index shards (ivf, hnsw or flat) from code parts (resumable), or append/delete",
        jobs.cmd_build,
        ("cluster.commands.jobs:BuildTargetConfig", "indexer.build:BuildConfig", _RUNTIME),
    ),
    Command(
        ("gc",),
        "remove old index generations no kept manifest names (dry run unless --yes)",
        gc.cmd_gc,
        ("cluster.commands.gc:GcConfig",),
    ),
    Command(
        ("eval",),
        "retrieval quality of a code set (ALGORITHMS.md §4)",
        jobs.cmd_eval,
        ("cluster.commands.jobs:EvalConfig",),
    ),
    Command(
        ("index",),
        "encode + build as one resumable job, here or submitted to a Ray cluster",
        jobs.cmd_index,
        ("cluster.index_job:IndexJobConfig", "cluster.commands.jobs:IndexSubmitConfig", _RUNTIME),
    ),
    Command(
        ("serve",),
        "serve an index over HTTP with Ray Serve (blocks)",
        serving.cmd_serve,
        ("serving.config:ServeConfig", "serving.config:HttpConfig", _RUNTIME),
    ),
    Command(
        ("query",),
        "query a running server",
        serving.cmd_query,
        ("cluster.commands.serving:QueryConfig",),
    ),
    Command(
        ("bench",),
        "run a benchmark (an odh.benchmarks entry point; odh bench NAME --help)",
        ops.cmd_bench,
        arguments=ops.add_bench_arguments,
    ),
    Command(
        ("cluster", "up"),
        "start a head and N worker nodes; prints the address",
        ops.cmd_cluster_up,
        ("cluster.local_cluster:LocalClusterConfig",),
    ),
    Command(
        ("cluster", "status"),
        "alive nodes and their resources",
        ops.cmd_cluster_status,
        ("cluster.commands.ops:ClusterStatusConfig",),
    ),
    Command(
        ("cluster", "down"),
        "stop the local cluster's processes (others are left alone)",
        ops.cmd_cluster_down,
        ("cluster.commands.ops:ClusterDownConfig",),
    ),
    Command(
        ("demo",),
        "the whole pipeline on Fashion-MNIST, locally",
        ops.cmd_demo,
        ("cluster.demo:DemoConfig", _RUNTIME),
    ),
)


def config_class(name: str) -> type:
    """The config class a ``"module:Class"`` name refers to."""
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


def _prefix(i: int) -> str:
    return f"config{i}."


def _wanted(command: Command, select: Sequence[str] | None) -> bool:
    if select is None:
        return True
    if not select or command.path[0] != select[0]:
        return False
    return len(command.path) < 2 or len(select) < 2 or command.path[1] == select[1]


def _build(
    select: Sequence[str] | None,
) -> tuple[argparse.ArgumentParser, dict[tuple[str, ...], argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="odh", description=DESCRIPTION)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    groups: dict[str, Any] = {}
    for command in COMMANDS:
        if len(command.path) == 2:
            top = command.path[0]
            if top not in groups:
                group = sub.add_parser(top, help=GROUPS[top], description=GROUPS[top])
                parsers[(top,)] = group
                groups[top] = group.add_subparsers(
                    dest=f"{top}_command", required=True, metavar="ACTION"
                )
            target = groups[top]
        else:
            target = sub
        p = target.add_parser(command.path[-1], help=command.help, description=command.help)
        p.set_defaults(odh_command=command)
        parsers[command.path] = p
        if not _wanted(command, select):
            continue  # only listed; its configs are imported when it is selected
        if command.arguments is not None:
            command.arguments(p)
        for i, name in enumerate(command.configs):
            add_config_arguments(p, config_class(name), prefix=_prefix(i))
    return parser, parsers


def build_parser(select: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The `odh` parser. ``select`` (the leading command words) limits the commands whose flags
    are built (and whose configs are imported); None builds every command."""
    return _build(select)[0]


def command_parsers() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every (group and) command's parser by its path, fully built (for docs/cli.md)."""
    return _build(None)[1]


def _select(argv: Sequence[str]) -> list[str]:
    """The command words of ``argv`` (``["data", "cifar10"]``), skipping ``--log-level X``."""
    words: list[str] = []
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token == "--log-level":
            skip = True
        elif token.startswith("-"):
            if words:
                break
        else:
            words.append(token)
            if len(words) == 2:
                break
    return words


def parse_command(argv: Sequence[str]) -> tuple[Command, list[Any], argparse.Namespace]:
    """Parse a command line into its command, its configs (validated) and the namespace."""
    argv = list(argv)
    args = build_parser(_select(argv)).parse_args(argv)
    command: Command = args.odh_command
    configs = [
        config_from_namespace(config_class(name), args, prefix=_prefix(i))
        for i, name in enumerate(command.configs)
    ]
    return command, configs, args


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        command, configs, args = parse_command(argv)
    except (ValueError, TypeError) as exc:  # a config's own validation, naming the field
        logging.basicConfig(level=logging.INFO)
        logger.error("%s", exc)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        if command.arguments is not None:
            return command.handler(*configs, args=args)
        return command.handler(*configs)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        logger.error("%s", exc)
        logger.debug("details", exc_info=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
