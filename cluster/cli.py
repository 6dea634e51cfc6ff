"""The `odh` command line: one subcommand per pipeline stage, each mapped onto one stage function.

Heavy imports (torch, ray, faiss) happen inside the handlers so that ``odh --help`` is instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

logger = logging.getLogger("odh")

DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def fashion_mnist_source(explicit: str | None) -> str:
    """The Fashion-MNIST IDX directory: ``--source``, ``$ODH_FASHION_MNIST`` or the Debian path."""
    source = explicit or os.environ.get("ODH_FASHION_MNIST") or DEFAULT_FASHION_MNIST_DIR
    if not Path(source, "train-images-idx3-ubyte.gz").is_file():
        raise FileNotFoundError(
            f"Fashion-MNIST IDX files not found in {source!r}: install the Debian package "
            "'dataset-fashion-mnist' (make does this) or point ODH_FASHION_MNIST / --source at a "
            "directory holding train-images-idx3-ubyte.gz and friends"
        )
    return source


def _storage_options(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--storage-options is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError("--storage-options must be a JSON object")
    return value


def _runtime(args: argparse.Namespace):
    from cluster.runtime import RuntimeConfig, ray_runtime

    return ray_runtime(RuntimeConfig(address=args.address, num_cpus=args.num_cpus))


# --------------------------------------------------------------------------- handlers


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
        storage_options=_storage_options(args.storage_options),
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
        storage_options=_storage_options(args.storage_options),
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
        storage_options=_storage_options(args.storage_options),
    )
    logger.info("image set written to %s: %s", args.output, info.counts)
    return 0


def train_config_from_args(args: argparse.Namespace):
    """The TrainConfig an `odh train` command line describes."""
    from odh_core.train import TrainConfig

    return TrainConfig(
        model=args.model,
        n_bits=args.bits,
        layer=args.layer,
        binary=not args.full_precision,
        method=args.method,
        warmup_epochs=args.warmup_epochs,
        transition_epoch=args.stage1_epochs,
        stage2_epochs=args.stage2_epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        num_threads=args.threads,
    )


def run_train(args: argparse.Namespace) -> str:
    """Train an encoder on the training split of an image set; returns the checkpoint path."""
    from indexer.imageset import load_arrays, read_info
    from odh_core.train import train_encoder

    info = read_info(args.images)
    splits = list(info.protocol.train_splits) if info.protocol else ["train"]
    _, images, labels = load_arrays(args.images, splits)
    config = train_config_from_args(args)
    logger.info("training %s on %d images of %s", config.method, len(images), args.images)
    return train_encoder(
        images, labels, config, args.output, workers=args.workers, use_gpu=args.gpu
    )


def cmd_train(args: argparse.Namespace) -> int:
    with _runtime(args):
        checkpoint = run_train(args)
    logger.info("encoder checkpoint: %s", checkpoint)
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    from indexer.encode import encode

    with _runtime(args):
        summary = encode(
            args.images,
            args.checkpoint,
            args.output,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            num_cpus=args.actor_cpus,
            num_gpus=args.gpus_per_actor,
            pushgateway=args.pushgateway,
            storage_options=_storage_options(args.storage_options),
        )
    sys.stdout.write(json.dumps(summary.to_json(), indent=2) + "\n")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from indexer.build import BuildConfig, build
    from indexer.update import append, delete, read_id_file

    options = _storage_options(args.storage_options)
    modes = sum(x is not None for x in (args.codes, args.append)) + bool(
        args.delete_ids or args.delete
    )
    if modes != 1:
        raise ValueError("give exactly one of --codes, --append CODES, --delete-ids/--delete")
    with _runtime(args):
        if args.append is not None:
            manifest = append(args.append, args.output, storage_options=options)
        elif args.delete_ids or args.delete:
            ids = list(args.delete or [])
            if args.delete_ids:
                ids += read_id_file(args.delete_ids, options).tolist()
            manifest = delete(args.output, ids, storage_options=options)
        else:
            config = BuildConfig(
                n_shards=args.shards,
                nlist=args.nlist,
                train_size=args.train_size,
                seed=args.seed,
                quantizer=args.quantizer,
                hnsw_m=args.hnsw_m,
                resume=not args.no_resume,
            )
            manifest = build(args.codes, args.output, config=config, storage_options=options)
    logger.info(
        "index %s generation %d: %d codes in %d shards, nlist=%d, %d deleted",
        args.output,
        manifest.generation,
        manifest.ntotal,
        manifest.n_shards,
        manifest.nlist,
        manifest.deleted_count,
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import time

    from serving.app import start_server

    with _runtime(args):
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


def cmd_eval(args: argparse.Namespace) -> int:
    from indexer.evaluate import evaluate

    metrics = evaluate(args.codes, args.images, seed=args.seed)
    text = json.dumps(metrics, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


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

    cluster_down()
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


# --------------------------------------------------------------------------- parser


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster address (default: $RAY_ADDRESS, else an embedded local cluster)",
    )
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded local cluster")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", required=True, help="image-set directory or s3:// prefix")
    p.add_argument("--query-per-class", type=int, default=None, help="query images per class")
    p.add_argument("--train-per-class", type=int, default=None, help="training images per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows-per-part", type=int, default=10_000, help="rows per part-*.parquet")
    p.add_argument("--storage-options", default=None, help="JSON fsspec storage options")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="resnet_small", help="encoder registry name")
    p.add_argument("--bits", type=int, default=64, choices=[16, 32, 64, 128], help="code length")
    p.add_argument("--layer", default="reactnet", help="BNN layer variant")
    p.add_argument("--full-precision", action="store_true", help="train the full-precision twin")
    p.add_argument("--method", default="odh", choices=["odh", "csq"], help="hashing method")
    p.add_argument("--warmup-epochs", type=int, default=2, help="stage-0 classifier epochs")
    p.add_argument(
        "--stage1-epochs",
        type=int,
        default=3,
        help="stage-1 (exploration) epochs = transition epoch",
    )
    p.add_argument("--stage2-epochs", type=int, default=3, help="stage-2 (aggregation) epochs")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers (DDP)")
    p.add_argument("--threads", type=int, default=2, help="torch threads per worker")
    p.add_argument("--gpu", action="store_true", help="one GPU per Ray Train worker")
    p.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odh",
        description="ODH index: one-bit deep hashing image search on Ray, FAISS and Ray Serve.",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    _add_data_args(p)
    p.set_defaults(func=cmd_data_cifar10)
    p = data_sub.add_parser("folder", help="an image folder with one subfolder per class")
    p.add_argument("--source", required=True, help="root folder: ROOT/CLASS/IMAGE")
    p.add_argument("--name", default=None, help="data set name (default: the folder name)")
    p.add_argument("--image-size", type=int, default=None, help="default: the first image's")
    _add_data_args(p)
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
    _add_data_args(p)
    p.set_defaults(func=cmd_data_parquet)

    p = sub.add_parser("train", help="train a hashing encoder with Ray Train")
    p.add_argument("--images", required=True, help="image set (its protocol's train split is used)")
    p.add_argument("--output", required=True, help="checkpoint directory")
    _add_train_args(p)
    _add_runtime_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("encode", help="encode an image set into code parts with Ray Data")
    p.add_argument("--images", required=True, help="image set directory or s3:// prefix")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--output", required=True, help="codes directory or s3:// prefix")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--concurrency", type=int, default=1, help="encoder actors")
    p.add_argument("--actor-cpus", type=float, default=1.0, help="CPUs per encoder actor")
    p.add_argument(
        "--gpus-per-actor", type=float, default=0.0, help="GPUs per encoder actor (0: CPU)"
    )
    p.add_argument("--pushgateway", default=None, help="Prometheus Pushgateway URL for metrics")
    p.add_argument("--storage-options", default=None, help="JSON fsspec storage options")
    _add_runtime_args(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser(
        "build",
        help="build FAISS IndexBinaryIVF shards from code parts (resumable), or append/delete",
    )
    p.add_argument("--codes", default=None, help="codes directory to build a new index from")
    p.add_argument("--append", default=None, metavar="CODES", help="add these codes to --output")
    p.add_argument("--delete-ids", default=None, metavar="FILE", help="file of ids to remove")
    p.add_argument(
        "--delete", type=int, nargs="+", default=None, metavar="ID", help="ids to remove"
    )
    p.add_argument("--output", required=True, help="index directory or s3:// prefix")
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--nlist", type=int, default=None, help="IVF lists (default ~4·sqrt(n))")
    p.add_argument("--train-size", type=int, default=100_000, help="quantizer training sample")
    p.add_argument("--quantizer", default="flat", choices=["flat", "hnsw"], help="coarse quantizer")
    p.add_argument("--hnsw-m", type=int, default=16, help="HNSW graph degree (--quantizer hnsw)")
    p.add_argument("--no-resume", action="store_true", help="rebuild even finished shards")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--storage-options", default=None, help="JSON fsspec storage options")
    _add_runtime_args(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("serve", help="serve an index over HTTP with Ray Serve (blocks)")
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--groups", type=int, default=1, help="searcher groups")
    p.add_argument("--replicas", type=int, default=1, help="replicas per searcher group")
    p.add_argument(
        "--placement",
        choices=["split", "node"],
        default="split",
        help="split: shards cut into --groups; node: one group per manifest shard group",
    )
    p.add_argument("--replica-cpus", type=float, default=0.25, help="CPUs per Serve replica")
    p.add_argument("--timeout-s", type=float, default=5.0, help="per-group deadline")
    p.add_argument("--device", default="cpu", help="query encoder device (cpu, cuda)")
    _add_runtime_args(p)
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

    p = sub.add_parser("eval", help="retrieval quality of a code set (ALGORITHMS.md §4)")
    p.add_argument("--codes", required=True)
    p.add_argument("--images", required=True, help="the image set (its protocol names the splits)")
    p.add_argument("--output", default=None, help="also write the metrics JSON here")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_eval)

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
    p.set_defaults(func=cmd_cluster_up)
    p = cl_sub.add_parser("status", help="alive nodes and their resources")
    p.add_argument("--address", default=None, help="default: $RAY_ADDRESS, else auto")
    p.set_defaults(func=cmd_cluster_status)
    p = cl_sub.add_parser("down", help="stop every `ray start` process on this machine")
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
    _add_runtime_args(p)
    p.set_defaults(func=cmd_demo)
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
