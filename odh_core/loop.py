"""The training loop's types and helpers: its runtime context, result, random generators,
state copies and validation (split from :mod:`odh_core.stages`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from odh_core.config import TrainConfig
from odh_core.data import TrainData
from odh_core.methods.base import HashMethod
from odh_core.metrics import evaluate_codes
from odh_core.packing import pack_bits

logger = logging.getLogger(__name__)

__all__ = [
    "FitResult",
    "LoopContext",
    "LoopRng",
    "StateFn",
    "cpu_state",
    "encode_packed",
    "n_batches",
    "validate",
]


StateFn = Callable[[], dict[str, Any]]


@dataclass
class LoopContext:
    """How the loop talks to its runtime (single process or a Ray Train worker).

    ``end_epoch(metrics, state_fn)`` is called by every rank after every epoch (when set; else
    ``report(metrics)``); ``state_fn()`` returns the full training state to checkpoint.
    ``initial_state`` is such a state to resume from. ``observe(metrics, encoder, method)``, when
    set, is called by every rank once after every stage-1/2 epoch (not the warm-up), after
    validation and before ``end_epoch``: a read-only look at the model (``odh bench findings``);
    it must not change the modules' state or draw from the loop's random generators.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    prepare: Callable[[nn.Module], nn.Module] = lambda m: m
    report: Callable[[dict[str, Any]], None] = lambda metrics: None
    end_epoch: Callable[[dict[str, Any], StateFn], None] | None = None
    initial_state: dict[str, Any] | None = None
    observe: Callable[[dict[str, Any], nn.Module, HashMethod], None] | None = None

    def epoch_done(self, metrics: dict[str, Any], state_fn: StateFn) -> None:
        if self.end_epoch is not None:
            self.end_epoch(metrics, state_fn)
        else:
            self.report(metrics)


@dataclass
class FitResult:
    state_dict: dict[str, torch.Tensor]
    n_classes: int
    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    best_epoch: int
    best_val_map: float | None
    history: list[dict[str, Any]]
    resumed_from: int | None = None  # global epoch of the state the run resumed from
    method_info: dict[str, Any] = field(default_factory=dict)  # what the method reports
    determinism: dict[str, Any] = field(default_factory=dict)  # threads, kernels (for records)


@dataclass
class LoopRng:
    gen: torch.Generator
    rng: np.random.Generator
    agg: torch.Generator

    def state(self) -> dict[str, Any]:
        return {
            "gen": self.gen.get_state(),
            "rng": self.rng.bit_generator.state,
            "agg": self.agg.get_state(),
            "torch": torch.get_rng_state(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
        self.rng.bit_generator.state = state["rng"]
        self.agg.set_state(state["agg"])
        torch.set_rng_state(state["torch"])


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    # contiguous (NCHW) copies whatever the training memory format: checkpoints stay as before
    return {
        k: v.detach().cpu().clone(memory_format=torch.contiguous_format)
        for k, v in module.state_dict().items()
    }


def n_batches(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest > 1 or (n == 1) else 0)


def encode_packed(model: nn.Module, data: TrainData, device: torch.device) -> np.ndarray:
    model.eval()
    codes = []
    with torch.no_grad():
        for start in range(0, len(data), 512):
            x = data.normalise(data.images[start : start + 512].to(device))
            codes.append(pack_bits((model(x) >= 0).cpu().numpy()))
    return np.concatenate(codes)


def validate(
    encoder: nn.Module, val: TrainData, db: TrainData, cfg: TrainConfig, device: torch.device
) -> float:
    q = encode_packed(encoder, val, device)
    d = encode_packed(encoder, db, device)
    m = evaluate_codes(
        q,
        val.targets.cpu().numpy() > 0,
        d,
        db.targets.cpu().numpy() > 0,
        n_bits=cfg.n_bits,
        seed=cfg.seed,
    )
    return float(m["map_all_tie_aware"])
