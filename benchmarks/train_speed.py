"""Training-speed benchmark: images/s of the training loop before and after the speed work.

``odh bench train-speed`` (or ``python -m benchmarks.train_speed``) trains the ODH method on
Fashion-MNIST training images (one epoch per stage: stage-0 warm-up classifier, stage 1, stage 2)
with ``odh_core.stages.fit`` in this process, for

* ``before``: ``TrainConfig(kernels="reference", channels_last=False)`` — the original sign /
  estimator ops (``torch.where`` chains, unfused RPReLU) in the NCHW memory format;
* ``after``: the defaults (``kernels="fused"``, ``channels_last=True``);
* ``after+compile`` (with ``--compile``): ``after`` plus ``torch.compile``, compile time included;

for the BNN (``resnet_small``, ReActNet layers) and its full-precision twin, at each thread
count. Forms are interleaved inside every repeat (before, after, … then the next repeat) so that
load from other processes on a shared machine hits them alike; the median over repeats is
reported, with the load average before every run. No validation (``val_fraction`` 0): the
numbers are training steps only.

images/s counts training rows per second of epoch time: in stage 2 each row is seen through two
augmented views (the encoder processes twice as many images). images per CPU-second divides by
the CPU time of this process instead (``time.process_time``, all its threads): on a machine
shared with other jobs it is the steadier measure of the work per image, at one thread the
same as images/s on an idle machine. Writes ``train_speed.json``,
``train_speed.md`` and ``train_speed.png`` under ``--output``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # `python3 benchmarks/train_speed.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._machine import command_line, machine_info
from odh_core.options import option

logger = logging.getLogger(__name__)

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

#: the forms compared: name → TrainConfig overrides
FORMS: dict[str, dict[str, Any]] = {
    "before": {"kernels": "reference", "channels_last": False},
    "after": {"kernels": "fused", "channels_last": True},
    "after+compile": {"kernels": "fused", "channels_last": True, "compile_model": True},
}
STAGES = ("stage0", "stage1", "stage2")


@dataclass(frozen=True)
class Config:
    """Settings of ``odh bench train-speed``."""

    images: int = option(1280, help="training images (Fashion-MNIST train split, first N)")
    threads: tuple[int, ...] = option((1, 2), help="torch thread counts")
    models: tuple[str, ...] = option(
        ("bnn", "fp"), help="bnn (ReActNet resnet_small) and/or fp (its full-precision twin)"
    )
    repeats: int = option(3, help="interleaved repeats per row (median)")
    batch_size: int = option(128, help="training batch size")
    compile: bool = option(False, help="also measure after+compile (torch.compile, ~1 min/run)")
    output: str = option(RESULTS_DIR, help="directory for train_speed.json / .md / .png")
    quick: bool = option(False, help="tiny sizes: a smoke run of every code path")

    def __post_init__(self) -> None:
        if self.images < 2 * self.batch_size:
            raise ValueError(f"images must be >= 2·batch_size, got {self.images}")
        if not self.threads or min(self.threads) < 1:
            raise ValueError(f"threads must be positive, got {self.threads}")
        if not self.models or set(self.models) - {"bnn", "fp"}:
            raise ValueError(f"models must be a non-empty subset of (bnn, fp), got {self.models}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if self.batch_size < 4:
            raise ValueError(f"batch_size must be >= 4, got {self.batch_size}")

    def effective(self) -> Config:
        """The settings actually used (``quick`` shrinks every size)."""
        if not self.quick:
            return self
        return dataclasses.replace(self, images=128, batch_size=32, threads=(1,), repeats=1)

    def forms(self) -> list[str]:
        return ["before", "after"] + (["after+compile"] if self.compile else [])


def _fmnist(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` Fashion-MNIST training images ``uint8[n, 28, 28, 1]`` and labels."""
    from indexer.converters.fashion_mnist import _find, fashion_mnist_source, read_idx

    source = fashion_mnist_source(None)
    images = read_idx(_find(source, "train-images-idx3-ubyte"))[:n]
    labels = read_idx(_find(source, "train-labels-idx1-ubyte"))[:n]
    return images[..., None], labels.astype(np.int64)


def _rows_per_epoch(n: int, batch_size: int) -> dict[str, int]:
    """Training rows per epoch and stage (as ``odh_core.stages`` batches them)."""
    full, rest = divmod(n, batch_size)
    shuffled = full * batch_size + (rest if rest > 1 else 0)
    return {"stage0": shuffled, "stage1": shuffled, "stage2": full * batch_size}


def train_config(form: str, model: str, threads: int, batch_size: int) -> Any:
    """The ``TrainConfig`` of one measured run: one epoch per stage, no validation."""
    from odh_core.config import TrainConfig

    return TrainConfig(
        binary=model == "bnn",
        warmup_epochs=1,
        transition_epoch=1,
        stage2_epochs=1,
        batch_size=batch_size,
        num_threads=threads,
        val_fraction=0.0,
        seed=0,
        **FORMS[form],
    )


def one_run(
    images: np.ndarray, labels: np.ndarray, form: str, model: str, threads: int, batch_size: int
) -> dict[str, Any]:
    """Train once: images/s per stage from the epoch wall times and per CPU-second of this
    process (robust to other processes on a shared machine), the losses per stage."""
    from odh_core.stages import LoopContext, fit

    cfg = train_config(form, model, threads, batch_size)
    load = os.getloadavg()[0]
    marks: list[tuple[int, float]] = []

    def end_epoch(metrics: dict[str, Any], state_fn: Any) -> None:
        marks.append((int(metrics["stage"]), time.process_time()))

    cpu0, t0 = time.process_time(), time.perf_counter()
    result = fit(images, labels, cfg, LoopContext(end_epoch=end_epoch))
    wall = time.perf_counter() - t0
    rows = _rows_per_epoch(len(images), batch_size)
    seconds = {f"stage{rec['stage']}": rec["epoch_s"] for rec in result.history}
    losses = {f"stage{rec['stage']}": rec["loss"] for rec in result.history}
    cpu = {}
    prev = cpu0
    for stage, mark in marks:  # one epoch per stage; includes that stage's set-up
        cpu[f"stage{stage}"] = mark - prev
        prev = mark
    total_rows = sum(rows[s] for s in seconds)
    return {
        "form": form,
        "model": model,
        "threads": threads,
        "load_average": round(load, 2),
        "wall_s": round(wall, 2),
        "epoch_s": {k: round(v, 3) for k, v in seconds.items()},
        "cpu_s": {k: round(v, 3) for k, v in cpu.items()},
        "images_per_s": {k: round(rows[k] / v, 1) for k, v in seconds.items()},
        "images_per_s_all": round(total_rows / sum(seconds.values()), 1),
        "images_per_cpu_s": {k: round(rows[k] / v, 1) for k, v in cpu.items()},
        "images_per_cpu_s_all": round(total_rows / sum(cpu.values()), 1),
        "loss": losses,
    }


def summarise(runs: list[dict[str, Any]], forms: list[str]) -> list[dict[str, Any]]:
    """Median images/s (wall) and images per CPU-second per (model, threads, form), and the
    speed-up of each form over before (ratios of the medians)."""
    rows: list[dict[str, Any]] = []
    keys = sorted({(r["model"], r["threads"]) for r in runs})
    for model, threads in keys:
        med: dict[str, dict[str, dict[str, float]]] = {}
        for form in forms:
            sel = [
                r for r in runs if (r["model"], r["threads"], r["form"]) == (model, threads, form)
            ]
            if not sel:
                continue
            med[form] = {
                kind: {
                    "all": statistics.median(r[f"{kind}_all"] for r in sel),
                    **{s: statistics.median(r[kind][s] for r in sel) for s in STAGES},
                }
                for kind in ("images_per_s", "images_per_cpu_s")
            }
        for form, values in med.items():
            row: dict[str, Any] = {"model": model, "threads": threads, "form": form}
            for kind, by_stage in values.items():
                row[kind] = {k: round(v, 1) for k, v in by_stage.items()}
                if "before" in med:
                    base = med["before"][kind]
                    name = "speedup" if kind == "images_per_s" else "speedup_cpu"
                    row[name] = {k: round(v / base[k], 2) for k, v in by_stage.items()}
            rows.append(row)
    return rows


def loss_agreement(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, threads, stage): the largest |epoch loss of a form − that of before| in the
    same repeat (seeded runs: equal maths gives equal losses up to float rounding, which grows
    over the steps of an epoch)."""
    out = []
    by_key: dict[tuple[Any, ...], dict[str, dict[str, float]]] = {}
    for r in runs:
        by_key.setdefault((r["model"], r["threads"], r["repeat"]), {})[r["form"]] = r["loss"]
    for (model, threads, _rep), forms in sorted(by_key.items()):
        if "before" not in forms:
            continue
        for form, loss in forms.items():
            if form == "before":
                continue
            for stage, value in loss.items():
                out.append({
                    "model": model, "threads": threads, "form": form, "stage": stage,
                    "loss_before": round(forms["before"][stage], 6), "loss": round(value, 6),
                    "abs_diff": float(f"{abs(value - forms['before'][stage]):.3g}"),
                })  # fmt: skip
    return out


def run(config: Config) -> int:
    """Run the benchmark and write train_speed.json / .md / .png; returns 0."""
    from benchmarks._train_speed_report import markdown, plot_png

    cfg = config.effective()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    images, labels = _fmnist(cfg.images)
    forms = cfg.forms()
    runs: list[dict[str, Any]] = []
    load_start = round(os.getloadavg()[0], 2)
    # untimed: numba compiles (or loads) the fused kernels, oneDNN builds its primitives
    for form in forms:
        if "compile" not in form:
            one_run(images[: 2 * cfg.batch_size], labels[: 2 * cfg.batch_size], form, "bnn", 1,
                    cfg.batch_size)  # fmt: skip
    for rep in range(cfg.repeats):
        for threads in cfg.threads:
            for model in cfg.models:
                for form in forms if rep % 2 == 0 else forms[::-1]:
                    r = one_run(images, labels, form, model, threads, cfg.batch_size)
                    r["repeat"] = rep
                    logger.info(
                        "repeat %d %s %d thread(s) %s: %.1f img/s, %.1f img/cpu-s (load %.2f)",
                        rep, model, threads, form, r["images_per_s_all"], r["images_per_cpu_s_all"],
                        r["load_average"],
                    )  # fmt: skip
                    runs.append(r)
    import torch

    result: dict[str, Any] = {
        "benchmark": "train_speed",
        "command": command_line(),
        "machine": machine_info(),
        "settings": {
            **dataclasses.asdict(cfg),
            "output": os.path.relpath(cfg.output, os.path.dirname(os.path.dirname(RESULTS_DIR))),
            "forms": {f: FORMS[f] for f in forms},
            "method": "odh",
            "backbone": "resnet_small",
            "layer": "reactnet",
            "schedule": "1 epoch per stage (warm-up, stage 1, stage 2), no validation",
        },
        "torch_threads_interop": torch.get_num_interop_threads(),
        "load_average_start": load_start,
        "load_average_end": round(os.getloadavg()[0], 2),
        "rows": summarise(runs, forms),
        "loss_agreement": loss_agreement(runs),
        "runs": runs,
    }
    result["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "train_speed.md").write_text(markdown(result))
    plot_png(result, out / "train_speed.png")
    logger.info("wrote %s", out / "train_speed.json")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.train_speed [--quick] ...`` (flags generated from :class:`Config`)."""
    from cluster.cli_config import parse_config

    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = parse_config(Config, argv, prog="python -m benchmarks.train_speed", description=__doc__)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
