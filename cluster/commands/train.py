"""`odh train`: train a hashing encoder on an image set's training split with Ray Train."""

from __future__ import annotations

import argparse
import dataclasses
import logging

from cluster.commands.args import add_runtime_args, runtime

logger = logging.getLogger("odh")


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
    config = dataclasses.replace(train_config_from_args(args), mode=args.mode, centres=args.centres)
    logger.info("training %s on %d images of %s", config.method, len(images), args.images)
    return train_encoder(
        images,
        labels,
        config,
        args.output,
        workers=args.workers,
        use_gpu=args.gpu,
        resume=args.resume,
        max_failures=args.max_failures,
    )


def cmd_train(args: argparse.Namespace) -> int:
    with runtime(args):
        checkpoint = run_train(args)
    logger.info("encoder checkpoint: %s", checkpoint)
    return 0


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="resnet_small", help="encoder registry name")
    p.add_argument("--bits", type=int, default=64, choices=[16, 32, 64, 128], help="code length")
    p.add_argument(
        "--layer",
        default="reactnet",
        choices=["xnor", "bireal", "reactnet", "irnet"],
        help="BNN layer variant",
    )
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
    p.add_argument(
        "--mode",
        default="spec",
        choices=["spec", "faithful"],
        help="faithful: the reference code's quirks (weight-only XNOR, pre-split stage-2 pools)",
    )
    p.add_argument(
        "--centres",
        default="semantic",
        choices=["semantic", "hadamard"],
        help="ODH hash centres (hadamard: fixed CSQ centres, an ablation)",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="Ray Train workers (DDP: gloo on CPU, nccl on GPU)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the latest run in --output from its last per-epoch checkpoint",
    )
    p.add_argument(
        "--max-failures",
        type=int,
        default=2,
        help="worker-group restarts from the last checkpoint after a worker failure",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads per worker")
    p.add_argument("--gpu", action="store_true", help="one GPU per Ray Train worker")
    p.add_argument("--seed", type=int, default=0)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to the `odh` parser."""
    p = sub.add_parser("train", help="train a hashing encoder with Ray Train")
    p.add_argument("--images", required=True, help="image set (its protocol's train split is used)")
    p.add_argument("--output", required=True, help="checkpoint directory")
    add_train_args(p)
    add_runtime_args(p)
    p.set_defaults(func=cmd_train)
