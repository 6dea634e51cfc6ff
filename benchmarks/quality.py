"""Retrieval quality benchmark: ODH and every other registered hashing method (binary and
full-precision twins) on ``fmnist-1``.

``odh bench quality --runs core`` (or ``python3 -m benchmarks.quality ...`` from the repo root,
no install needed). With ``--no-ray`` the runs call ``odh_core.stages.fit`` in-process and nothing
here imports Ray or FAISS (the GPU path); otherwise each run goes through Ray Train
(``train_encoder``). Fashion-MNIST is read straight from the IDX files and split exactly like
``indexer.converters.fashion_mnist`` (``fmnist-1``, seed 0). Writes ``quality.json``
(``{"runs": [...]}``), ``quality.md`` and PR / precision@N plots into ``--output``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

if __package__ in (None, ""):  # `python3 benchmarks/quality.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._machine import machine_info
from benchmarks._quality_data import load_fmnist1, upsample_uint8
from benchmarks._quality_grid import ODH_ABLATIONS, PROTOCOL, RunSpec, grid
from benchmarks._quality_report import backbone_stats, write_report
from benchmarks._quality_run import encode, run_all, run_one, spec_key
from odh_core.options import option

__all__ = [
    "DEFAULT_SOURCE",
    "PROTOCOL",
    "RESULTS_DIR",
    "Config",
    "RunSpec",
    "backbone_stats",
    "encode",
    "grid",
    "load_fmnist1",
    "main",
    "run",
    "run_one",
    "upsample_uint8",
    "write_report",
]

logger = logging.getLogger("odh.bench.quality")

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
DEFAULT_SOURCE = "/usr/share/datasets/fashion-mnist"
# The methods grid on 2 CPU cores: warm-up 1, stage 1 2, stage 2 2 epochs — the schedule that
# fits the whole grid (9 methods × {BNN, FP} × {64, 32} bits × 3 seeds = 108 runs, each also
# encoding the 70,000 query + database images) into about three hours (docs/method.md).
CPU_METHODS_EPOCHS = "1,2,2"


@dataclass(frozen=True)
class Config:
    """Retrieval quality of the training grid on Fashion-MNIST (fmnist-1)."""

    runs: str = option(
        "cpu",
        help="grid: smoke, cpu, core, ablations, full, resnet18, methods (every method × "
        "{BNN, FP} × {64, 32} bits × seeds), methods-64, odh-ablations (ODH-BNN at 64 bits × "
        f"seeds: baseline, ODH-FP, {', '.join(ODH_ABLATIONS)}; paired with the methods grid's "
        "runs)",
    )
    seeds: int = option(
        3, help="seeds per configuration in the methods and odh-ablations grids (paired)"
    )
    methods: tuple[str, ...] | None = option(
        None, help="keep only runs of these methods (default: every method of the grid)"
    )
    variants: tuple[str, ...] | None = option(
        None,
        help="keep only runs of these variants ('default' names the runs without one, e.g. the "
        "odh-ablations baseline and ODH-FP; default: every variant of the grid)",
    )
    device: str | None = option(None, help="cpu or cuda (default: cuda when visible)")
    no_ray: bool = option(False, help="train in-process (no Ray/FAISS import)")
    model: str | None = option(None, help="backbone (default resnet_small; resnet18 grid)")
    source: str | None = option(
        None,
        help=f"Fashion-MNIST IDX directory (default: $ODH_FASHION_MNIST, else {DEFAULT_SOURCE})",
    )
    epochs: str | None = option(
        None,
        help="warm-up,stage1,stage2 (default per device and grid; methods and odh-ablations "
        "grids on cpu: "
        f"{CPU_METHODS_EPOCHS})",
    )
    batch_size: int = option(128, help="training batch size")
    threads: int | None = option(None, help="torch CPU threads")
    output: str = option(RESULTS_DIR, help="results directory")
    name: str = option("quality", help="result file stem")
    append: bool = option(False, help="add to an existing <name>.json")
    rerun: bool = option(
        False,
        help="with --append, run again the runs <name>.json already holds (same configuration "
        "and seed); by default they are skipped, so an interrupted grid resumes",
    )
    query_per_class: int = option(100, help="query images per class")
    train_per_class: int = option(500, help="training images per class")
    limit: int | None = option(None, help="use only the first N runs of the grid")
    parallel: int | None = option(
        None, help="concurrent runs sharing the device (default: 6 on cuda with --no-ray, else 1)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    from cluster.cli_config import parse_config

    argv = sys.argv[1:] if argv is None else list(argv)
    return run(parse_config(Config, argv, prog="python -m benchmarks.quality"))


def run(config: Config) -> int:
    from cluster.cli_config import config_argv

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = argparse.Namespace(**asdict(config))
    if args.model is None:
        args.model = "resnet18" if args.runs == "resnet18" else "resnet_small"
    args.source = args.source or os.environ.get("ODH_FASHION_MNIST", DEFAULT_SOURCE)
    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible to torch")
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    args.device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    if args.parallel is None:
        args.parallel = 6 if (args.device == "cuda" and args.no_ray) else 1
    cpus = os.cpu_count() or 2
    args.threads = args.threads or max(
        1, min(8, cpus // 2 if args.parallel == 1 else cpus // args.parallel)
    )
    torch.set_num_threads(args.threads)
    from odh_core.models import default_input_size

    args.size = default_input_size(args.model)
    args.channels = 1 if args.size == 28 else 3
    # odh-ablations shares its baseline and ODH-FP runs with the methods grid: same schedule
    paired_grid = args.runs.startswith("methods") or args.runs == "odh-ablations"
    if args.epochs is None and paired_grid and args.device == "cpu":
        args.epochs = CPU_METHODS_EPOCHS
    if args.epochs is None:
        args.epochs = {"smoke": "1,1,1"}.get(args.runs) or (
            ("2,4,4" if args.model == "resnet18" else "3,12,10")
            if args.device == "cuda"
            else "2,3,3"
        )
    args.epochs = tuple(int(v) for v in str(args.epochs).split(","))
    if len(args.epochs) != 3:
        raise SystemExit("--epochs must be warm-up,stage1,stage2")
    args.command = shlex.join(["odh", "bench", "quality", *config_argv(config)])
    specs = grid(args.runs, seeds=args.seeds)
    if args.methods:
        specs = [s for s in specs if s.method in set(args.methods)]
    if args.variants:
        known = {s.variant for s in specs}
        unknown = sorted(set(args.variants) - known)
        if unknown:
            raise SystemExit(f"--variants: {unknown} not in the grid (it has {sorted(known)})")
        specs = [s for s in specs if s.variant in set(args.variants)]
    specs = specs[: args.limit]
    if args.parallel > 1 and not args.no_ray:
        raise SystemExit("--parallel > 1 needs --no-ray (Ray Train runs one trainer at a time)")
    if not args.no_ray:
        import ray

        if not ray.is_initialized():
            ray.init(
                address="local",  # never join someone else's cluster on this machine
                num_cpus=max(2, args.threads),
                include_dashboard=False,
                configure_logging=False,
                log_to_driver=False,
            )
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, f"{args.name}.json")
    doc: dict[str, Any] = {"runs": [], "machines": []}
    if args.append and os.path.exists(path):
        with open(path) as fh:
            doc = json.load(fh)
        doc.setdefault("machines", [])
    if args.append and not args.rerun:
        done = {(r.get("config_key"), r.get("seed"), r.get("variant")) for r in doc["runs"]}
        todo = [s for s in specs if (spec_key(s, args), s.seed, s.variant) not in done]
        if len(todo) < len(specs):
            logger.info(
                "%d of %d runs already in %s: skipped", len(specs) - len(todo), len(specs), path
            )
        specs = todo
    doc["machines"].append({**machine_info(), "device": args.device_name})
    doc["backbones"] = backbone_stats()
    for rec in run_all(specs, args):
        doc["runs"].append(rec)
        with open(path, "w") as fh:  # after every run: a long grid keeps what it measured
            json.dump(doc, fh, indent=1)
        write_report(doc, args.output, args.name)
    logger.info("wrote %s", ", ".join([path, *write_report(doc, args.output, args.name)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
