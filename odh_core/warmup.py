"""Stage 0 of the training loop: the full-precision warm-up classifier (split from
:mod:`odh_core.stages`)."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import nn

from odh_core.augment import WEAK, augment
from odh_core.config import TrainConfig
from odh_core.data import TrainData, shuffled_batches
from odh_core.loop import LoopContext, LoopRng, cpu_state, n_batches
from odh_core.losses import classification_loss
from odh_core.models import create_encoder
from odh_core.progress import EpochProgress as _Progress
from odh_core.speed import apply_speed_settings, maybe_compile, memory_format
from odh_core.trainmodule import ClassifierView

logger = logging.getLogger(__name__)

__all__ = ["warmup"]


def warmup(
    train: TrainData,
    cfg: TrainConfig,
    ctx: LoopContext,
    rngs: LoopRng,
    history: list[dict[str, Any]],
    state: dict[str, Any] | None,
) -> nn.Module:
    """Stage 0: the full-precision classifier (rows of W = class semantics)."""
    fp = create_encoder(
        cfg.model,
        n_bits=cfg.n_bits,
        binary=False,
        layer=cfg.layer,
        n_classes=train.n_classes,
        in_channels=train.images.shape[1],
    ).to(ctx.device)
    apply_speed_settings(fp, cfg)
    if state is not None and state["phase"] == "hash":
        return fp  # weights come with the hash module's state
    wrapped = ctx.prepare(ClassifierView(fp))
    forward = maybe_compile(wrapped, cfg)
    fmt = memory_format(cfg)
    opt = torch.optim.Adam(wrapped.parameters(), lr=cfg.warmup_lr)
    steps = max(1, cfg.warmup_epochs * n_batches(len(train), cfg.batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    start = 0
    if state is not None:
        fp.load_state_dict(state["fp"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start = state["global_epoch"] + 1
    progress = _Progress(ctx, cfg.n_epochs)
    for epoch in range(start, cfg.warmup_epochs):
        wrapped.train()
        t0, total, n = time.perf_counter(), 0.0, 0
        progress.start(
            f"epoch {epoch + 1}/{cfg.n_epochs} (warm-up)",
            n_batches(len(train), cfg.batch_size),
        )
        for idx in shuffled_batches(len(train), cfg.batch_size, rngs.rng):
            xb, yb = train.batch(idx)
            x = train.normalise(augment(xb, WEAK, rngs.gen)).contiguous(memory_format=fmt)
            loss = classification_loss(forward(x), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + loss.detach(), n + 1
            progress.step(total, n)
        rec = {
            "stage": 0,
            "epoch": epoch,
            "global_epoch": epoch,
            "loss": float(total) / max(n, 1),
            "epoch_s": time.perf_counter() - t0,
        }
        history.append(rec)
        logger.debug("warm-up %s", rec)
        progress.end(rec, -1.0)

        def state_fn(epoch: int = epoch) -> dict[str, Any]:
            return {
                "phase": "warmup",
                "global_epoch": epoch,
                "fp": cpu_state(fp),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "history": list(history),
                "rng": rngs.state(),
            }

        ctx.epoch_done(rec, state_fn)
    return fp
