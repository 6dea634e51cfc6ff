"""Where a training step's time goes: torch.profiler top operators, before vs after.

``python -m benchmarks.train_speed_profile`` profiles the encoder's forward + backward (the
dominant part of a training step) on a batch of Fashion-MNIST images, for the BNN
(``resnet_small``, ReActNet layers) and its full-precision twin, in the forms of
``odh bench train-speed`` (``before``: reference ops, NCHW; ``after``: fused ops,
channels_last) at 1 and 2 threads, and writes the top operators by self CPU time to
``train_speed_profile.json`` / ``.md`` under ``--output``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python3 benchmarks/train_speed_profile.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._machine import command_line, machine_info
from benchmarks.train_speed import FORMS, RESULTS_DIR, _fmnist
from odh_core.options import option

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    """Settings of the training-step profile."""

    batch_size: int = option(128, help="images per step")
    steps: int = option(3, help="profiled steps per form (after 2 unprofiled ones)")
    threads: tuple[int, ...] = option((1, 2), help="torch thread counts")
    top: int = option(12, help="operators listed per form")
    output: str = option(RESULTS_DIR, help="directory for train_speed_profile.json / .md")

    def __post_init__(self) -> None:
        for name in ("batch_size", "steps", "top"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.threads or min(self.threads) < 1:
            raise ValueError(f"threads must be positive, got {self.threads}")


def profile_form(model_name: str, form: str, threads: int, cfg: Config) -> dict[str, Any]:
    """Top operators of ``cfg.steps`` forward + backward passes of one form."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from odh_core.layers import set_kernels
    from odh_core.models import create_encoder

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_encoder("resnet_small", n_bits=64, binary=model_name == "bnn", layer="reactnet")
    images, _ = _fmnist(cfg.batch_size)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).float() / 255.0
    opts = FORMS[form]
    set_kernels(model, opts["kernels"])
    if opts["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(cfg.steps):
            step()
    wall = (time.perf_counter() - t0) / cfg.steps
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return {
        "model": model_name,
        "form": form,
        "threads": threads,
        "step_ms_profiled": round(wall * 1e3, 1),
        "self_cpu_ms_per_step": round(total / 1e3 / cfg.steps, 1),
        "load_average": round(os.getloadavg()[0], 2),
        "top": [
            {
                "op": e.key,
                "self_cpu_ms_per_step": round(e.self_cpu_time_total / 1e3 / cfg.steps, 2),
                "share": round(e.self_cpu_time_total / total, 3),
                "calls_per_step": e.count // cfg.steps,
            }
            for e in events[: cfg.top]
        ],
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Training-step profile (encoder forward + backward)",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Batch {result['settings']['batch_size']} Fashion-MNIST images, "
        f"{result['settings']['steps']} profiled steps per form (torch.profiler, self CPU "
        "time; the profiler's own overhead inflates the step times). Forms as in "
        "`odh bench train-speed`. Shared machine: load average per form in the heading.",
        "",
    ]
    for p in result["profiles"]:
        lines += [
            f"## {p['model']}, {p['form']}, {p['threads']} thread(s) — "
            f"{p['self_cpu_ms_per_step']} ms self CPU per step (load {p['load_average']})",
            "",
            "| operator | ms/step | share | calls/step |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| `{t['op']}` | {t['self_cpu_ms_per_step']} | {100 * t['share']:.1f}% | "
            f"{t['calls_per_step']} |"
            for t in p["top"]
        ]
        lines.append("")
    return "\n".join(lines)


def run(config: Config) -> int:
    """Profile every (model, form, threads) and write the JSON and markdown; returns 0."""
    profiles = [
        profile_form(model, form, threads, config)
        for model in ("bnn", "fp")
        for threads in config.threads
        for form in ("before", "after")
    ]
    result = {
        "benchmark": "train_speed_profile",
        "command": command_line(),
        "machine": machine_info(),
        "settings": {
            **dataclasses.asdict(config),
            "output": os.path.relpath(config.output, os.path.dirname(os.path.dirname(RESULTS_DIR))),
        },
        "profiles": profiles,
    }
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_speed_profile.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "train_speed_profile.md").write_text(markdown(result))
    logger.info("wrote %s", out / "train_speed_profile.md")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.train_speed_profile`` (flags generated from :class:`Config`)."""
    from cluster.cli_config import parse_config

    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = parse_config(
        Config, argv, prog="python -m benchmarks.train_speed_profile", description=__doc__
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
