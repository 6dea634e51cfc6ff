"""`odh encode`, `odh build`, `odh index`, `odh eval`: the batch side."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from cluster.commands.args import add_runtime_args, parse_storage_options, runtime

logger = logging.getLogger("odh")


def cmd_encode(args: argparse.Namespace) -> int:
    from indexer.encode import encode

    with runtime(args):
        summary = encode(
            args.images,
            args.checkpoint,
            args.output,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            num_cpus=args.actor_cpus,
            num_gpus=args.gpus_per_actor,
            pushgateway=args.pushgateway,
            storage_options=parse_storage_options(args.storage_options),
        )
    sys.stdout.write(json.dumps(summary.to_json(), indent=2) + "\n")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from indexer.build import BuildConfig, build
    from indexer.update import append, delete, read_id_file

    options = parse_storage_options(args.storage_options)
    modes = sum(x is not None for x in (args.codes, args.append)) + bool(
        args.delete_ids or args.delete
    )
    if modes != 1:
        raise ValueError("give exactly one of --codes, --append CODES, --delete-ids/--delete")
    with runtime(args):
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


def cmd_eval(args: argparse.Namespace) -> int:
    from indexer.evaluate import evaluate

    metrics = evaluate(args.codes, args.images, seed=args.seed)
    text = json.dumps(metrics, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from cluster.index_job import IndexJobConfig, index, submit_index_job

    config = IndexJobConfig(
        images=args.images,
        checkpoint=args.checkpoint,
        output=args.output,
        n_shards=args.shards,
        nlist=args.nlist,
        train_size=args.train_size,
        seed=args.seed,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        actor_cpus=args.actor_cpus,
        storage_options=parse_storage_options(args.storage_options),
    )
    if args.submit:
        runtime_env = json.loads(args.runtime_env_json) if args.runtime_env_json else None
        job_id = submit_index_job(
            config, args.submit, runtime_env=runtime_env, wait=not args.no_wait
        )
        sys.stdout.write(f"{job_id}\n")
        return 0
    with runtime(args):
        record = index(config)
    sys.stdout.write(json.dumps(record, indent=2, default=str) + "\n")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to the `odh` parser."""
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
    add_runtime_args(p)
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
    add_runtime_args(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("eval", help="retrieval quality of a code set (ALGORITHMS.md §4)")
    p.add_argument("--codes", required=True)
    p.add_argument("--images", required=True, help="the image set (its protocol names the splits)")
    p.add_argument("--output", default=None, help="also write the metrics JSON here")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "index", help="encode + build as one resumable job, here or submitted to a Ray cluster"
    )
    p.add_argument("--images", required=True, help="image set directory or s3:// prefix")
    p.add_argument("--checkpoint", required=True, help="encoder checkpoint directory")
    p.add_argument("--output", required=True, help="job root: <output>/codes, <output>/index")
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--nlist", type=int, default=None, help="IVF lists (default ~4·sqrt(n))")
    p.add_argument("--train-size", type=int, default=100_000, help="quantizer training sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--concurrency", type=int, default=1, help="encoder actors")
    p.add_argument("--actor-cpus", type=float, default=0.5, help="CPUs per encoder actor")
    p.add_argument("--storage-options", default=None, help="JSON fsspec storage options")
    p.add_argument(
        "--submit",
        default=None,
        metavar="DASHBOARD_URL",
        help="submit as a Ray job (Jobs API, e.g. http://HEAD:8265) instead of running here",
    )
    p.add_argument(
        "--runtime-env-json",
        default=None,
        help="runtime env for --submit (default: this project + its pinned requirements; "
        "'{}' when the cluster image already holds the project)",
    )
    p.add_argument("--no-wait", action="store_true", help="with --submit: return at once")
    add_runtime_args(p)
    p.set_defaults(func=cmd_index)
