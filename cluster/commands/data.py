"""`odh data ...`: write an image set from a source (converters in indexer.converters)."""

from __future__ import annotations

import argparse
import logging

from cluster.commands.args import (
    DEFAULT_FASHION_MNIST_DIR,
    add_data_args,
    fashion_mnist_source,
    parse_storage_options,
)

logger = logging.getLogger("odh")


def cmd_data_fashion_mnist(args: argparse.Namespace) -> int:
    from indexer.converters.fashion_mnist import convert_fashion_mnist

    info = convert_fashion_mnist(
        fashion_mnist_source(args.source),
        args.output,
        protocol=args.protocol,
        seed=args.seed,
        rows_per_part=args.rows_per_part,
    )
    logger.info("image set written to %s: %s", args.output, info.counts)
    return 0


def cmd_data_synthetic(args: argparse.Namespace) -> int:
    from indexer.converters.synthetic import make_synthetic

    info = make_synthetic(
        args.output,
        n_classes=args.classes,
        per_class=args.per_class,
        image_size=args.image_size,
        seed=args.seed,
    )
    logger.info("synthetic image set written to %s: %s", args.output, info.counts)
    return 0


def cmd_data_cifar10(args: argparse.Namespace) -> int:
    from indexer.converters.cifar10 import convert_cifar10

    info = convert_cifar10(
        args.source,
        args.output,
        seed=args.seed,
        rows_per_part=args.rows_per_part,
        query_per_class=100 if args.query_per_class is None else args.query_per_class,
        train_per_class=500 if args.train_per_class is None else args.train_per_class,
        storage_options=parse_storage_options(args.storage_options),
    )
    logger.info("image set written to %s: %s", args.output, info.counts)
    return 0


def cmd_data_folder(args: argparse.Namespace) -> int:
    from indexer.converters.folder import convert_folder

    info = convert_folder(
        args.source,
        args.output,
        name=args.name,
        image_size=args.image_size,
        query_per_class=args.query_per_class or 0,
        train_per_class=args.train_per_class or 0,
        seed=args.seed,
        rows_per_part=args.rows_per_part,
        storage_options=parse_storage_options(args.storage_options),
    )
    logger.info("image set written to %s: %s", args.output, info.counts)
    return 0


def cmd_data_parquet(args: argparse.Namespace) -> int:
    from indexer.converters.parquet_source import ColumnMapping, convert_parquet

    info = convert_parquet(
        args.source,
        args.output,
        columns=ColumnMapping(
            image=args.image_col,
            id=args.id_col,
            label=args.label_col,
            key=args.key_col,
            split=args.split_col,
        ),
        name=args.name,
        image_size=args.image_size,
        query_per_class=args.query_per_class or 0,
        train_per_class=args.train_per_class or 0,
        seed=args.seed,
        rows_per_part=args.rows_per_part,
        storage_options=parse_storage_options(args.storage_options),
    )
    logger.info("image set written to %s: %s", args.output, info.counts)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to the `odh` parser."""
    data = sub.add_parser("data", help="write an image set (Parquet parts + _dataset.json)")
    data_sub = data.add_subparsers(dest="source_kind", required=True, metavar="SOURCE")
    p = data_sub.add_parser("fashion-mnist", help="convert the Fashion-MNIST IDX files")
    p.add_argument("--output", required=True, help="image-set directory or s3:// prefix")
    p.add_argument(
        "--source",
        default=None,
        help=f"IDX directory (default: $ODH_FASHION_MNIST, else {DEFAULT_FASHION_MNIST_DIR})",
    )
    p.add_argument("--protocol", default="fmnist-1", choices=["fmnist-1", "fmnist-2"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows-per-part", type=int, default=10_000)
    p.set_defaults(func=cmd_data_fashion_mnist)
    p = data_sub.add_parser("synthetic", help="small class-structured images (tests, smoke runs)")
    p.add_argument("--output", required=True)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--per-class", type=int, default=24)
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_data_synthetic)
    p = data_sub.add_parser("cifar10", help="convert the CIFAR-10 python batches")
    p.add_argument("--source", required=True, help="directory with data_batch_1..5, test_batch")
    add_data_args(p)
    p.set_defaults(func=cmd_data_cifar10)
    p = data_sub.add_parser("folder", help="an image folder with one subfolder per class")
    p.add_argument("--source", required=True, help="root folder: ROOT/CLASS/IMAGE")
    p.add_argument("--name", default=None, help="data set name (default: the folder name)")
    p.add_argument("--image-size", type=int, default=None, help="default: the first image's")
    add_data_args(p)
    p.set_defaults(func=cmd_data_folder)
    p = data_sub.add_parser("parquet", help="any Parquet data set, given a column mapping")
    p.add_argument("--source", required=True, help="Parquet file or directory (or s3://)")
    p.add_argument("--image-col", default="image", help="binary or {bytes: ...} image column")
    p.add_argument("--id-col", default=None, help="int ids (default: row number)")
    p.add_argument("--label-col", default=None, help="int, list<int> or class-name labels")
    p.add_argument("--key-col", default=None, help="string keys")
    p.add_argument("--split-col", default=None, help="train/query/database split column")
    p.add_argument("--name", default="parquet", help="data set name")
    p.add_argument("--image-size", type=int, default=None, help="default: the first image's")
    add_data_args(p)
    p.set_defaults(func=cmd_data_parquet)
