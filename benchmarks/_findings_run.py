"""The training runs of ``odh bench findings``: observed runs and the stage-2 sweep.

Observed runs train one method (BNN and its full-precision twin, same schedule) with an
:class:`~benchmarks._findings_observe.EpochObserver` as the loop's ``observe`` hook; the run
that feeds the sweep also keeps its full training state after every epoch. The sweep resumes
that state at the derived transition epoch T (``LoopContext.initial_state``) with stage 2 on for
each setting: the settings share the warm-up, stage 1, the optimiser and its learning-rate
schedule (the observed run's, continued), the stage-2 batches and augmentations — they differ
only in the stage-2 loss, and the observed run itself is the "stage 1 continued" baseline.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks._findings_observe import EpochObserver

logger = logging.getLogger("odh.bench.findings")

__all__ = ["FindingsData", "Schedule", "observed_run", "prepare_data", "stage2_sweep"]


@dataclass(frozen=True)
class Schedule:
    """warm-up, stage-1 and stage-2 epochs."""

    warmup: int
    stage1: int
    stage2: int

    @property
    def hash_epochs(self) -> int:
        return self.stage1 + self.stage2


@dataclass
class FindingsData:
    """The training images, the observed subset and the fixed stage-2 gradient batch."""

    images: np.ndarray  # uint8 [n, 28, 28, 1]: what fit() trains on (it carves validation)
    labels: np.ndarray  # int64 [n]
    observe_idx: np.ndarray  # rows of ``images`` observed each epoch (training split only)
    grad_idx: np.ndarray  # rows of the fixed stage-2 batch (groups of n_pos, training split)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    n_classes: int


def prepare_data(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    n_observe: int,
    val_fraction: float,
    batch_size: int,
    n_pos: int,
    seed: int,
) -> FindingsData:
    """Pick the observed subset and the gradient batch from the rows ``fit`` trains on (its
    seeded split, recomputed here) and its normalisation statistics."""
    from odh_core.data import GroupBatchSampler, TrainData, labels_to_multihot, split_indices

    tr_idx, _ = split_indices(len(images), val_fraction, seed)
    targets = labels_to_multihot(labels)
    full = TrainData.from_arrays(images[tr_idx], targets[tr_idx])
    rng = np.random.default_rng([seed, 2024])
    observe = np.sort(rng.permutation(tr_idx)[: min(n_observe, len(tr_idx))])
    sampler = GroupBatchSampler(targets[tr_idx] > 0, batch_size, n_pos, 1)
    grad_idx = tr_idx[next(iter(sampler.batches(rng)))]
    return FindingsData(
        images=images,
        labels=np.asarray(labels, dtype=np.int64),
        observe_idx=observe,
        grad_idx=grad_idx,
        mean=full.mean,
        std=full.std,
        n_classes=int(targets.shape[1]),
    )


def _observer(data: FindingsData, n_pos: int, seed: int) -> EpochObserver:
    return EpochObserver(
        data.images[data.observe_idx],
        data.labels[data.observe_idx],
        data.mean,
        data.std,
        (data.images[data.grad_idx], data.labels[data.grad_idx], n_pos),
        n_classes=data.n_classes,
        seed=seed,
    )


def _record(cfg: Any, result: Any, observer: EpochObserver, wall: float) -> dict[str, Any]:
    return {
        "method": cfg.method,
        "binary": cfg.binary,
        "layer": cfg.effective_layer if cfg.binary else "fp",
        "model": cfg.model,
        "n_bits": cfg.n_bits,
        "seed": cfg.seed,
        "method_config": cfg.full_method_config(),
        "schedule": [cfg.warmup_epochs, cfg.transition_epoch, cfg.stage2_epochs],
        "best_epoch": result.best_epoch + 1,
        "best_val_map": result.best_val_map,
        "method_info": result.method_info,
        "wall_s": round(wall, 1),
        "warmup": [h for h in result.history if h["stage"] == 0],
        "epochs": observer.records,
    }


def observed_run(
    data: FindingsData,
    base: dict[str, Any],
    *,
    method: str,
    binary: bool,
    schedule: Schedule,
    keep_states: bool = False,
) -> tuple[dict[str, Any], dict[int, tuple[dict[str, Any], EpochObserver]]]:
    """Train ``method`` (BNN or twin) with the observer. Returns the run record with every
    epoch's observation and, with ``keep_states``, ``{hash epoch: (training state, observer)}``
    after every hash epoch (to resume from). ``base``: the TrainConfig fields of all runs."""
    import torch

    from odh_core.stages import LoopContext, fit
    from odh_core.train import TrainConfig

    cfg = TrainConfig(
        **base,
        method=method,
        binary=binary,
        warmup_epochs=schedule.warmup,
        transition_epoch=schedule.stage1,
        stage2_epochs=schedule.stage2,
    )
    observer = _observer(data, cfg.n_pos, cfg.seed)
    states: dict[int, tuple[dict[str, Any], EpochObserver]] = {}

    def end_epoch(metrics: dict[str, Any], state_fn: Any) -> None:
        if keep_states and metrics["stage"] > 0:
            states[int(metrics["epoch"]) + 1] = (
                copy.deepcopy(state_fn()),
                copy.deepcopy(observer),
            )

    logger.info("observed run: %s %s, schedule %s", method, "BNN" if binary else "FP", schedule)
    t0 = time.perf_counter()
    ctx = LoopContext(device=torch.device("cpu"), observe=observer, end_epoch=end_epoch)
    result = fit(data.images, data.labels, cfg, ctx)
    return _record(cfg, result, observer, time.perf_counter() - t0), states


def stage2_sweep(
    data: FindingsData,
    base: dict[str, Any],
    *,
    warmup: int,
    transition: int,
    stage2: int,
    start: tuple[dict[str, Any], EpochObserver],
    settings: list[tuple[str, dict[str, Any]]],
    done: Any = None,
) -> list[dict[str, Any]]:
    """ODH-BNN with each ``(label, method_config)`` in stage 2 for ``stage2`` epochs, each
    resumed from ``start`` (the observed run's state and observer after hash epoch
    ``transition``); ``done(records)`` is called after every setting."""
    import torch

    from odh_core.stages import LoopContext, fit
    from odh_core.train import TrainConfig

    if transition < 1 or stage2 < 1 or not settings:
        raise ValueError("the stage-2 sweep needs transition, stage2 >= 1 and a setting")
    state, observer = start
    if state["global_epoch"] != warmup + transition - 1:
        raise ValueError(f"the start state is not the end of hash epoch {transition}")
    records = []
    for label, method_config in settings:
        cfg = TrainConfig(
            **base,
            method="odh",
            binary=True,
            method_config=method_config,
            warmup_epochs=warmup,
            transition_epoch=transition,
            stage2_epochs=stage2,
        )
        branch = copy.deepcopy(observer)
        logger.info("sweep %s: stage 2 resumed after hash epoch %d", label, transition)
        t0 = time.perf_counter()
        ctx = LoopContext(
            device=torch.device("cpu"), observe=branch, initial_state=copy.deepcopy(state)
        )
        result = fit(data.images, data.labels, cfg, ctx)
        records.append({"label": label, **_record(cfg, result, branch, time.perf_counter() - t0)})
        if done is not None:
            done(records)
    return records
