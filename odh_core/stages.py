"""The training loop: stage 0 warm-up, stage 1 space exploration, stage 2 code aggregation.

The loop names no hashing method: it asks the method object (``TrainConfig.create_method()``,
see :mod:`odh_core.methods`) whether it needs the warm-up classifier, labels and class-balanced
stage-2 groups, lets it build its centres / state, and calls its loss per stage.

Framework-free: the Ray wrapper (``distributed.py``) supplies a ``LoopContext`` with the rank,
DDP wrapping, metric reporting, per-epoch checkpointing and the state to resume from. Epochs are
counted globally (warm-up epochs first); a training state captured after global epoch ``g``
resumes at ``g + 1`` with the same model, optimiser, scheduler and RNG states.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from typing import Any

import numpy as np
import torch

from odh_core.config import TrainConfig
from odh_core.data import (
    GroupBatchSampler,
    TrainData,
    labels_to_multihot,
    shuffled_batches,
    split_indices,
)
from odh_core.determinism import determinism_info, deterministic_torch
from odh_core.init_from import load_init_weights
from odh_core.layers import (
    get_layer_config,
    latent_binary_weights,
    set_ede_progress,
    set_real_weights,
)
from odh_core.loop import (
    FitResult,
    LoopContext,
    LoopRng,
    StateFn,
    cpu_state,
    n_batches,
    validate,
)
from odh_core.methods.base import HashMethod, MethodSetup
from odh_core.models import create_encoder
from odh_core.progress import EpochProgress as _Progress
from odh_core.speed import apply_speed_settings, maybe_compile
from odh_core.step import step_loss
from odh_core.trainmodule import HashTrainModule
from odh_core.warmup import warmup

logger = logging.getLogger(__name__)

__all__ = [
    "FitResult",
    "HashTrainModule",
    "LoopContext",
    "StateFn",
    "check_method_labels",
    "fit",
]

# the names of the loop's pieces before they moved to odh_core.loop / .step / .warmup
_Rng = LoopRng
_step_loss = step_loss


def _targets(labels: np.ndarray | None, n: int) -> np.ndarray:
    """Multi-hot targets; an unlabelled set (``labels`` None) has zero classes."""
    if labels is None:
        return np.zeros((n, 0), dtype=np.float32)
    return labels_to_multihot(labels)


def check_method_labels(method: str, needs_labels: bool, has_labels: bool) -> None:
    """Refuse, before any work, a method that needs labels on a set without them."""
    if needs_labels and not has_labels:
        raise ValueError(
            f"method {method!r} needs class labels, but the training images have no 'label' "
            "column (an unlabelled set trains with a method that needs no labels, e.g. "
            "'bdnn-unsup')"
        )


def _split_data(
    images: np.ndarray, labels: np.ndarray | None, cfg: TrainConfig, ctx: LoopContext
) -> tuple[TrainData, TrainData, TrainData | None, TrainData | None, TrainData]:
    """(full train split, this rank's shard, val, val database, stage-2 pool data)."""
    targets = _targets(labels, len(images))
    tr_idx, va_idx = split_indices(len(images), cfg.val_fraction, cfg.seed)
    full = TrainData.from_arrays(images[tr_idx], targets[tr_idx])
    per_rank = len(full) // ctx.world_size
    shard = np.arange(ctx.rank, per_rank * ctx.world_size, ctx.world_size)
    train = full.subset(shard).to(ctx.device)
    val = db = None
    if ctx.rank == 0 and len(va_idx) > 0 and targets.shape[1] > 0:
        val = dataclasses.replace(
            TrainData.from_arrays(images[va_idx], targets[va_idx]), mean=full.mean, std=full.std
        ).to(ctx.device)
        db_idx = np.random.default_rng(cfg.seed).permutation(len(full))[: cfg.val_db_max]
        db = full.subset(np.sort(db_idx)).to(ctx.device)
    # the stage-2 class pools hold this rank's training rows only, in every mode: the
    # validation rows select the checkpoint, so they must never be trained on
    return full, train, val, db, train


def fit(
    images: np.ndarray,
    labels: np.ndarray | None,
    cfg: TrainConfig,
    ctx: LoopContext,
    *,
    label_distance: np.ndarray | None = None,
) -> FitResult:
    """Run all stages; returns the encoder state selected on validation tie-aware mAP (the last
    epoch's when there is no validation: an unlabelled set or ``val_fraction`` 0).

    ``labels`` may be None for a method that needs none; ``label_distance`` (``[C, C]`` in
    [0, 1], from a class hierarchy) is offered to the method. Runs with ``cfg.num_threads``
    torch threads and deterministic algorithms on CPU (restored afterwards): the same seed,
    data, code, thread count and CPU kernels give bit-identical weights
    (:mod:`odh_core.determinism`, recorded in ``FitResult.determinism``)."""
    with deterministic_torch(cfg.num_threads, ctx.device.type):
        result = _fit(images, labels, cfg, ctx, label_distance=label_distance)
        result.determinism = determinism_info()
    return result


def _fit(
    images: np.ndarray,
    labels: np.ndarray | None,
    cfg: TrainConfig,
    ctx: LoopContext,
    *,
    label_distance: np.ndarray | None = None,
) -> FitResult:
    method: HashMethod = cfg.create_method()
    check_method_labels(cfg.method, method.needs_labels, labels is not None)
    torch.manual_seed(cfg.seed + ctx.rank)
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rngs = LoopRng(
        torch.Generator().manual_seed(cfg.seed * 1000 + ctx.rank),
        np.random.default_rng([cfg.seed, ctx.rank]),
        torch.Generator().manual_seed(cfg.seed + 7919 * (ctx.rank + 1)),
    )
    full, train, val, db, pool_data = _split_data(images, labels, cfg, ctx)
    state = ctx.initial_state
    history: list[dict[str, Any]] = list(state["history"]) if state is not None else []
    if state is not None:
        rngs.restore(state["rng"])
        logger.info("resuming after global epoch %d (%s)", state["global_epoch"], state["phase"])

    in_ch = train.images.shape[1]
    encoder = create_encoder(
        cfg.model,
        n_bits=cfg.n_bits,
        binary=cfg.binary,
        layer=cfg.effective_layer,
        in_channels=in_ch,
    )
    if cfg.init_from and not (state is not None and state["phase"] == "hash"):
        load_init_weights(encoder, cfg.init_from)  # a resumed hash phase brings its own weights
    n_warm = cfg.n_warmup_epochs
    classifier = None
    if method.needs_classifier:
        if train.n_classes == 0:
            raise ValueError(f"method {cfg.method!r} needs the warm-up classifier, hence labels")
        classifier = warmup(train, cfg, ctx, rngs, history, state)
    method.setup(
        MethodSetup(
            n_bits=cfg.n_bits,
            n_classes=train.n_classes,
            seed=cfg.seed,
            images=train.images,
            targets=train.targets,
            n_rows=max(len(train), len(pool_data)),
            encoder=encoder,
            classifier=classifier,
            normalise=train.normalise,
            label_distance=None if label_distance is None else torch.as_tensor(label_distance),
        )
    )
    module = HashTrainModule(encoder, method)
    module = apply_speed_settings(module.to(ctx.device), cfg)
    hash_state = state if state is not None and state["phase"] == "hash" else None
    if hash_state is not None:
        module.load_state_dict(hash_state["module"])
    clip_params = method.clip_parameters()
    wrapped = ctx.prepare(module)
    forward = maybe_compile(wrapped, cfg)
    opt = _optimizer(wrapped, encoder, cfg)
    steps1 = n_batches(len(train), cfg.batch_size)
    grouped = method.grouped_stage2 and train.n_classes > 0
    steps2 = max(1, len(train) // cfg.batch_size) if grouped else steps1
    total_steps = max(1, cfg.transition_epoch * steps1 + cfg.stage2_epochs * steps2)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr_max, total_steps=total_steps, div_factor=cfg.lr_max / cfg.lr
    )
    sampler = (
        GroupBatchSampler(pool_data.targets.cpu().numpy() > 0, cfg.batch_size, cfg.n_pos, steps2)
        if grouped
        else None
    )
    # two-step training: real latent weights for the first half of stage 1's steps
    real_until = (cfg.transition_epoch * steps1) // 2 if cfg.two_step else 0
    uses_ede = cfg.binary and get_layer_config(cfg.effective_layer).act_backward == "ede"
    best_state: dict[str, torch.Tensor] | None = None
    best_map, best_epoch, step, start = -1.0, -1, 0, 0
    if hash_state is not None:
        opt.load_state_dict(hash_state["opt"])
        sched.load_state_dict(hash_state["sched"])
        best_state, best_map = hash_state["best_state"], hash_state["best_map"]
        best_epoch, step = hash_state["best_epoch"], hash_state["step"]
        start = hash_state["global_epoch"] + 1 - n_warm
    progress = _Progress(ctx, cfg.n_epochs)
    for epoch in range(start, cfg.transition_epoch + cfg.stage2_epochs):
        stage = 1 if epoch < cfg.transition_epoch else 2
        wrapped.train()
        t0, total, n = time.perf_counter(), 0.0, 0
        progress.start(
            f"epoch {epoch + n_warm + 1}/{cfg.n_epochs} (stage {stage})",
            steps1 if stage == 1 else steps2,
        )
        data = pool_data if stage == 2 and sampler is not None else train
        batches = (
            sampler.batches(rngs.rng)
            if stage == 2 and sampler is not None
            else shuffled_batches(len(train), cfg.batch_size, rngs.rng)
        )
        for idx in batches:
            if uses_ede:
                set_ede_progress(encoder, step / total_steps)
            if cfg.two_step:
                set_real_weights(encoder, step < real_until)
            loss = step_loss(forward, method, data, idx, stage, cfg, rngs, step / total_steps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_params and cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(clip_params, cfg.grad_clip)
            opt.step()
            if step < total_steps:
                sched.step()
            step, total, n = step + 1, total + loss.detach(), n + 1
            progress.step(total, n)
        rec: dict[str, Any] = {
            "stage": stage,
            "epoch": epoch,
            "global_epoch": epoch + n_warm,
            "loss": float(total) / max(n, 1),
            "epoch_s": time.perf_counter() - t0,
        }
        if val is not None and db is not None:
            rec["val_map"] = validate(encoder, val, db, cfg, ctx.device)
        progress.end(rec, best_map)
        score = rec.get("val_map", float(epoch))
        if ctx.rank == 0 and score >= best_map:
            best_map, best_epoch = score, epoch
            best_state = cpu_state(encoder)
        history.append(rec)
        logger.debug("stage %d epoch %d: %s", stage, epoch, rec)
        if ctx.observe is not None:
            ctx.observe(rec, encoder, method)

        def state_fn(
            epoch: int = epoch,
            best: tuple[Any, ...] = (best_state, best_map, best_epoch, step),
        ) -> dict[str, Any]:
            return {
                "phase": "hash",
                "global_epoch": epoch + n_warm,
                "module": cpu_state(module),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                **dict(zip(("best_state", "best_map", "best_epoch", "step"), best, strict=True)),
                "history": list(history),
                "rng": rngs.state(),
            }

        ctx.epoch_done(rec, state_fn)
    set_real_weights(encoder, False)
    final = best_state if best_state is not None else cpu_state(encoder)
    return FitResult(
        state_dict=copy.deepcopy(final),
        n_classes=train.n_classes,
        image_size=int(train.images.shape[-1]),
        channels=in_ch,
        mean=full.mean,
        std=full.std,
        best_epoch=best_epoch,
        best_val_map=best_map if val is not None else None,
        history=history,
        resumed_from=None if state is None else int(state["global_epoch"]),
        method_info=dict(method.info),
    )


def _optimizer(wrapped: torch.nn.Module, encoder: torch.nn.Module, cfg: TrainConfig) -> Any:
    """Adam over the trainable parameters; with ``two_step`` the latent binary conv weights
    form a second group without weight decay (their sign is what counts, not their size)."""
    params = [p for p in wrapped.parameters() if p.requires_grad]
    if not cfg.two_step:
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    latent = {id(p) for p in latent_binary_weights(encoder)}
    groups = [
        {"params": [p for p in params if id(p) not in latent], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if id(p) in latent], "weight_decay": 0.0},
    ]
    logger.info("two-step: %d latent binary weights without weight decay", len(groups[1]["params"]))
    return torch.optim.Adam(groups, lr=cfg.lr)
