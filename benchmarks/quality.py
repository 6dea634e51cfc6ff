"""Retrieval quality benchmark: ODH vs CSQ (binary and full-precision twins) on ``fmnist-1``.

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
from typing import Any

if __package__ in (None, ""):  # `python3 benchmarks/quality.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._machine import command_line, machine_info
from benchmarks._quality_data import load_fmnist1, upsample_uint8
from benchmarks._quality_grid import PROTOCOL, RunSpec, grid
from benchmarks._quality_report import backbone_stats, write_report
from benchmarks._quality_run import encode, run_all, run_one

__all__ = [
    "DEFAULT_SOURCE",
    "PROTOCOL",
    "RESULTS_DIR",
    "RunSpec",
    "backbone_stats",
    "encode",
    "grid",
    "load_fmnist1",
    "main",
    "run_one",
    "upsample_uint8",
    "write_report",
]

logger = logging.getLogger("odh.bench.quality")

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
DEFAULT_SOURCE = "/usr/share/datasets/fashion-mnist"


def _command(argv: list[str]) -> str:
    """How this benchmark was invoked (``odh bench quality …`` or ``python3 -m …``)."""
    if sys.argv[1:] == argv and sys.argv and sys.argv[0].endswith("odh"):
        return command_line()
    return shlex.join(["python3", "-m", "benchmarks.quality", *argv])


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="odh bench quality", description=__doc__.split("\n")[0])
    p.add_argument(
        "--runs", default="cpu", help="grid: smoke, cpu, core, ablations, full, resnet18"
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.add_argument("--no-ray", action="store_true", help="train in-process (no Ray/FAISS import)")
    p.add_argument("--model", default=None, help="backbone (default resnet_small; resnet18 grid)")
    p.add_argument("--source", default=os.environ.get("ODH_FASHION_MNIST", DEFAULT_SOURCE))
    p.add_argument("--epochs", default=None, help="warm-up,stage1,stage2 (default per device)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--output", default=RESULTS_DIR)
    p.add_argument("--name", default="quality", help="result file stem")
    p.add_argument("--append", action="store_true", help="add to an existing <name>.json")
    p.add_argument("--query-per-class", type=int, default=100)
    p.add_argument("--train-per-class", type=int, default=500)
    p.add_argument("--limit", type=int, default=None, help="use only the first N runs of the grid")
    p.add_argument(
        "--parallel",
        type=int,
        default=None,
        help="concurrent runs sharing the device (default: 6 on cuda with --no-ray, else 1)",
    )
    args = p.parse_args(list(argv))
    if args.model is None:
        args.model = "resnet18" if args.runs == "resnet18" else "resnet_small"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = _parse(argv)
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
    if args.epochs is None:
        args.epochs = {"smoke": "1,1,1"}.get(args.runs) or (
            ("2,4,4" if args.model == "resnet18" else "3,12,10")
            if args.device == "cuda"
            else "2,3,3"
        )
    args.epochs = tuple(int(v) for v in str(args.epochs).split(","))
    if len(args.epochs) != 3:
        raise SystemExit("--epochs must be warm-up,stage1,stage2")
    args.command = _command(argv)
    specs = grid(args.runs)[: args.limit]
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
