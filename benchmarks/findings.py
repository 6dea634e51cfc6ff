"""ODH's two findings, measured per epoch on fmnist-1 training images (``odh bench findings``).

Finding 1: a binary network's codes struggle to reach their hash centres (which semantic
self-adaptive centres fix). Finding 2: code aggregation in a binary network evolves in two
stages (which the two-stage schedule exploits). For ODH-BNN, its full-precision twin and ODH-BNN
with fixed Hadamard centres (same schedule), every hash epoch records through the training loop's
``observe`` hook: distances of the training codes to their class centre and the share within
radius r, intra-class spread, inter-class separation, how the centres move, and the encoder
gradient ratio ‖∇ w·L_agg‖ / ‖∇ L_hc‖ (and cosine) on a fixed stage-2 batch. Transition epochs are
derived from the curves; then a short stage-2 sweep (the L_agg weight, with the strong view
supervised and per-view encoder passes) resumes from the derived transition.

``python -m benchmarks.findings`` (from the repo root) or ``odh bench findings``; writes
``findings.json``, ``findings.md`` and PNG plots into ``--output``. Single seed by default.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

if __package__ in (None, ""):  # `python3 benchmarks/findings.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._machine import machine_info
from odh_core.options import option

__all__ = ["RUNS", "Config", "main", "run"]

logger = logging.getLogger("odh.bench.findings")

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
# observed run name → (method, method_config, binary)
RUNS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "odh-bnn": ("odh", {}, True),
    "odh-fp": ("odh", {}, False),
    "odh-hadamard-bnn": ("odh", {"centres": "hadamard"}, True),
    "odh-hadamard-fp": ("odh", {"centres": "hadamard"}, False),
    "csq-bnn": ("csq", {}, True),
    "csq-fp": ("csq", {}, False),
}


def _schedule(text: str, name: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 0:
        raise ValueError(f"Config.{name} must be 'warm-up,stage1,stage2' (ints >= 0), got {text!r}")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class Config:
    """Per-epoch code geometry of ODH (BNN vs full-precision twin) and a stage-2 sweep."""

    runs: tuple[str, ...] = option(
        ("odh-bnn", "odh-fp"),
        help="observed runs (the sweep resumes the first one, which must be odh-bnn)",
        choices=list(RUNS),
    )
    epochs: str = option(
        "1,8,0",
        help="warm-up,stage1,stage2 epochs of the observed runs (default: stage 1 only, so the "
        "curves show the dynamics without a fixed transition)",
    )
    tol: float = option(0.05, help="plateau tolerance of the derived transition (relative)")
    sweep: bool = option(True, help="skip the stage-2 sweep", flag="--no-sweep")
    sweep_w_agg: tuple[float, ...] = option(
        (1e-3, 1e-2, 1e-1, 1.0), help="L_agg weights of the stage-2 sweep"
    )
    sweep_options: dict[str, Any] = option(
        default_factory=lambda: {"hc_strong": True, "separate_views": True},
        help="odh method-config of the swept stage 2 (besides w_agg)",
    )
    sweep_stage2: int = option(
        1,
        help="stage-2 epochs of each sweep setting, resumed after the transition epoch of the "
        "observed ODH-BNN run (at most its remaining hash epochs)",
    )
    sweep_transition: int | None = option(
        None, help="resume the sweep after this hash epoch (default: the derived transition)"
    )
    n_bits: int = option(64, help="code length", flag="--bits")
    model: str = option("resnet_small", help="backbone")
    layer: str = option("reactnet", help="BNN layer variant")
    observe: int = option(2000, help="training-split images whose codes are measured each epoch")
    train_per_class: int = option(500, help="fmnist-1 training images per class")
    query_per_class: int = option(
        100, help="fmnist-1 query images per class (only shapes the seeded split; unused here)"
    )
    batch_size: int = option(128, help="training batch size")
    n_pos: int = option(2, help="stage-2 positives per class group")
    val_fraction: float = option(0.1, help="share of the training images held out by fit()")
    seed: int = option(0, help="random seed (single seed)")
    threads: int = option(1, help="torch CPU threads")
    source: str | None = option(
        None, help="Fashion-MNIST IDX directory (default: the installed copy)"
    )
    output: str = option(RESULTS_DIR, help="results directory")
    name: str = option("findings", help="result file stem")
    append: bool = option(
        False,
        help="add to an existing <name>.json: observed runs it holds are skipped (so is the "
        "sweep when it holds one); the runs must share its settings",
    )

    def __post_init__(self) -> None:
        _schedule(self.epochs, "epochs")
        if self.sweep_transition is not None and self.sweep_transition < 1:
            raise ValueError(f"Config.sweep_transition must be >= 1, got {self.sweep_transition}")
        if self.sweep and self.runs[0] != "odh-bnn":
            raise ValueError("Config.runs must start with 'odh-bnn' for the sweep (or --no-sweep)")
        unknown = [r for r in self.runs if r not in RUNS]
        if unknown or not self.runs:
            raise ValueError(f"Config.runs must be non-empty, from {list(RUNS)}, got {unknown}")
        if not 0 <= self.tol < 1:
            raise ValueError(f"Config.tol must be in [0, 1), got {self.tol}")
        if any(w < 0 for w in self.sweep_w_agg):
            raise ValueError(f"Config.sweep_w_agg must be >= 0, got {self.sweep_w_agg}")
        names = ("observe", "train_per_class", "query_per_class", "batch_size", "n_pos")
        names += ("threads", "sweep_stage2")
        for name in names:
            if getattr(self, name) < 1:
                raise ValueError(f"Config.{name} must be >= 1, got {getattr(self, name)}")


def main(argv: Sequence[str] | None = None) -> int:
    from cluster.cli_config import parse_config

    argv = sys.argv[1:] if argv is None else list(argv)
    return run(parse_config(Config, argv, prog="python -m benchmarks.findings"))


def _write(doc: dict[str, Any], config: Config) -> list[str]:
    from benchmarks._findings_report import write_report

    os.makedirs(config.output, exist_ok=True)
    path = os.path.join(config.output, f"{config.name}.json")
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=1)
    return [path, *write_report(doc, config.output, config.name)]


def run(config: Config) -> int:
    """Train the observed runs (and the sweep), write json, md and plots; returns 0."""
    from cluster.cli_config import config_argv

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    from benchmarks._findings_report import derive_transitions, run_label
    from benchmarks._findings_run import Schedule, observed_run, prepare_data, stage2_sweep
    from benchmarks._quality_data import load_fmnist1
    from indexer.converters.fashion_mnist import fashion_mnist_source

    torch.set_num_threads(config.threads)
    source = config.source or fashion_mnist_source()
    images, labels = load_fmnist1(
        source, train_per_class=config.train_per_class, query_per_class=config.query_per_class
    )["train"]
    data = prepare_data(
        images,
        labels,
        n_observe=config.observe,
        val_fraction=config.val_fraction,
        batch_size=config.batch_size,
        n_pos=config.n_pos,
        seed=config.seed,
    )
    base = {
        "model": config.model,
        "n_bits": config.n_bits,
        "layer": config.layer,
        "batch_size": config.batch_size,
        "n_pos": config.n_pos,
        "seed": config.seed,
        "val_fraction": config.val_fraction,
        "num_threads": config.threads,
    }
    schedule = Schedule(*_schedule(config.epochs, "epochs"))
    command = shlex.join(["odh", "bench", "findings", *config_argv(config)])
    doc: dict[str, Any] = {
        "command": command,
        "commands": [command],
        "machine": machine_info(),
        "config": asdict(config),
        "single_seed": True,
        "n_train": len(labels),
        "n_observe": len(data.observe_idx),
        "runs": [],
        "transitions": {},
    }
    path = os.path.join(config.output, f"{config.name}.json")
    if config.append and os.path.exists(path):
        with open(path) as fh:
            doc = json.load(fh)
        doc.setdefault("commands", [doc["command"]]).append(command)
    have = {run_label(r) for r in doc["runs"]}
    sweep = config.sweep and not doc.get("sweep")
    states: dict[int, Any] = {}
    for i, name in enumerate(config.runs):
        method, method_config, binary = RUNS[name]
        if _label(method, method_config, binary) in have:
            logger.info("%s: already in %s, skipped (--append)", name, path)
            continue
        rec, kept = observed_run(
            data,
            {**base, "method_config": method_config},
            method=method,
            binary=binary,
            schedule=schedule,
            keep_states=sweep and i == 0,
        )
        states = states or kept
        doc["runs"].append(rec)
        doc["transitions"][run_label(rec)] = derive_transitions(rec, config.tol)
        _write(doc, config)
    if sweep and config.sweep_w_agg:
        if not states:
            raise ValueError("the sweep resumes the odh-bnn run: with --append, --no-sweep")
        t, s2, source_text = _sweep_schedule(config, schedule, doc)
        doc["sweep_schedule"] = [schedule.warmup, t, s2]
        doc["sweep_transition_source"] = source_text
        settings = [("reference", {})] + [
            (f"w_agg={w:g}", {**config.sweep_options, "w_agg": w}) for w in config.sweep_w_agg
        ]

        def done(records: list[dict[str, Any]]) -> None:
            doc["sweep"] = records
            _write(doc, config)

        stage2_sweep(
            data,
            base,
            warmup=schedule.warmup,
            transition=t,
            stage2=s2,
            start=states[t],
            settings=settings,
            done=done,
        )
    paths = _write(doc, config)
    logger.info("wrote %s", ", ".join(paths))
    return 0


def _label(method: str, method_config: dict[str, Any], binary: bool) -> str:
    from benchmarks._findings_report import run_label

    return run_label({"method": method, "method_config": method_config, "binary": binary})


def _sweep_schedule(config: Config, schedule: Any, doc: dict[str, Any]) -> tuple[int, int, str]:
    """(transition T, stage-2 epochs, where T came from): T from ``--sweep-transition`` or the
    first observed run's mean code-to-centre distance plateau (else half its hash epochs),
    capped so that stage 2 fits in the observed run's schedule."""
    from benchmarks._findings_report import run_label

    total = schedule.hash_epochs
    label = run_label(doc["runs"][0])
    derived = doc["transitions"][label]["centre_distance"]
    if config.sweep_transition is not None:
        t, source = config.sweep_transition, "given by --sweep-transition"
    elif derived is not None:
        t, source = derived, f"{label}, mean code-to-centre distance plateau"
    else:
        t, source = total // 2, "no plateau found: half of the observed hash epochs"
    t = min(max(t, 1), total - 1)
    return t, min(config.sweep_stage2, total - t), source


if __name__ == "__main__":
    raise SystemExit(main())
