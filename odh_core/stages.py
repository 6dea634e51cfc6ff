"""The training loop: stage 0 warm-up, stage 1 space exploration, stage 2 code aggregation.

Framework-free: the Ray wrapper (``distributed.py``) supplies a ``LoopContext`` with the rank,
DDP wrapping and metric reporting.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from odh_core.augment import STRONG, WEAK, augment
from odh_core.centres import SemanticCentres, csq_centres, multilabel_centres
from odh_core.data import (
    GroupBatchSampler,
    TrainData,
    labels_to_multihot,
    shuffled_batches,
    split_indices,
)
from odh_core.layers import set_ede_progress
from odh_core.losses import aggregation_loss, classification_loss, csq_loss, hash_centre_loss
from odh_core.metrics import evaluate_codes
from odh_core.models import create_encoder
from odh_core.packing import pack_bits
from odh_core.train import TrainConfig

logger = logging.getLogger(__name__)


@dataclass
class LoopContext:
    """How the loop talks to its runtime (single process or a Ray Train worker)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    prepare: Callable[[nn.Module], nn.Module] = lambda m: m
    report: Callable[[dict[str, Any]], None] = lambda metrics: None


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


class _Classify(nn.Module):
    """DDP-friendly wrapper: forward = classifier logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.classify(x)


class HashTrainModule(nn.Module):
    """Encoder + (ODH) centre MLP and warm-up classifier, or (CSQ) fixed centres, in one module."""

    def __init__(
        self,
        encoder: nn.Module,
        *,
        classifier: nn.Module | None,
        centres: torch.Tensor | None,
        train_classifier_backbone: bool,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.classifier = classifier
        self.train_classifier_backbone = train_classifier_backbone
        if classifier is not None:
            self.centre_module = SemanticCentres(classifier.feature_dim, encoder.n_bits)
            if not train_classifier_backbone:
                for name, p in classifier.named_parameters():
                    p.requires_grad_(name.startswith("classifier"))
        else:
            self.register_buffer("fixed_centres", centres)

    def train(self, mode: bool = True) -> HashTrainModule:
        super().train(mode)
        if self.classifier is not None and not self.train_classifier_backbone:
            self.classifier.eval()  # frozen backbone: fixed BN statistics
        return self

    def forward(
        self, x: torch.Tensor, x_cls: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Returns (u for x, centres, classifier logits for x_cls or None)."""
        u = self.encoder(x)
        if self.classifier is None:
            return u, self.fixed_centres, None
        centres = self.centre_module(self.classifier.classifier.weight)
        with torch.set_grad_enabled(self.train_classifier_backbone and torch.is_grad_enabled()):
            feats = self.classifier.features(x_cls)
        return u, centres, self.classifier.classify_features(feats)


def _n_batches(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest > 1 or (n == 1) else 0)


def _encode(model: nn.Module, data: TrainData, device: torch.device) -> np.ndarray:
    model.eval()
    codes = []
    with torch.no_grad():
        for start in range(0, len(data), 512):
            x = data.normalise(data.images[start : start + 512].to(device))
            codes.append(pack_bits((model(x) >= 0).cpu().numpy()))
    return np.concatenate(codes)


def _validate(
    encoder: nn.Module, val: TrainData, db: TrainData, cfg: TrainConfig, device: torch.device
) -> float:
    q = _encode(encoder, val, device)
    d = _encode(encoder, db, device)
    m = evaluate_codes(
        q, val.targets.numpy() > 0, d, db.targets.numpy() > 0, n_bits=cfg.n_bits, seed=cfg.seed
    )
    return float(m["map_all_tie_aware"])


def _warmup(
    train: TrainData,
    cfg: TrainConfig,
    ctx: LoopContext,
    gen: torch.Generator,
    rng: np.random.Generator,
    history: list[dict[str, Any]],
) -> nn.Module:
    fp = create_encoder(
        cfg.model,
        n_bits=cfg.n_bits,
        binary=False,
        layer=cfg.layer,
        n_classes=train.n_classes,
        in_channels=train.images.shape[1],
    )
    wrapped = ctx.prepare(_Classify(fp))
    opt = torch.optim.Adam(wrapped.parameters(), lr=cfg.warmup_lr)
    steps = max(1, cfg.warmup_epochs * _n_batches(len(train), cfg.batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    for epoch in range(cfg.warmup_epochs):
        wrapped.train()
        t0, total, n = time.perf_counter(), 0.0, 0
        for idx in shuffled_batches(len(train), cfg.batch_size, rng):
            x = train.normalise(augment(train.images[idx], WEAK, gen)).to(ctx.device)
            loss = classification_loss(wrapped(x), train.targets[idx].to(ctx.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + loss.item(), n + 1
        rec = {
            "stage": 0,
            "epoch": epoch,
            "loss": total / max(n, 1),
            "epoch_s": time.perf_counter() - t0,
        }
        history.append(rec)
        logger.info("warm-up %s", rec)
        ctx.report(rec)
    return fp


def fit(images: np.ndarray, labels: np.ndarray, cfg: TrainConfig, ctx: LoopContext) -> FitResult:
    """Run all stages; returns the encoder state selected on validation tie-aware mAP."""
    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed + ctx.rank)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + ctx.rank)
    rng = np.random.default_rng([cfg.seed, ctx.rank])
    targets = labels_to_multihot(labels)
    tr_idx, va_idx = split_indices(len(images), cfg.val_fraction, cfg.seed)
    full = TrainData.from_arrays(images[tr_idx], targets[tr_idx])
    per_rank = len(full) // ctx.world_size
    train = full.subset(np.arange(ctx.rank, per_rank * ctx.world_size, ctx.world_size))
    history: list[dict[str, Any]] = []

    val = db = None
    if ctx.rank == 0 and len(va_idx) > 0:
        val = dataclasses.replace(
            TrainData.from_arrays(images[va_idx], targets[va_idx]), mean=full.mean, std=full.std
        )
        db_idx = np.random.default_rng(cfg.seed).permutation(len(full))[: cfg.val_db_max]
        db = full.subset(np.sort(db_idx))

    in_ch = train.images.shape[1]
    encoder = create_encoder(
        cfg.model, n_bits=cfg.n_bits, binary=cfg.binary, layer=cfg.layer, in_channels=in_ch
    )
    if cfg.method == "odh":
        classifier = _warmup(train, cfg, ctx, gen, rng, history).to(ctx.device)
        module = HashTrainModule(
            encoder,
            classifier=classifier,
            centres=None,
            train_classifier_backbone=cfg.train_classifier_backbone,
        )
    else:
        c, info = csq_centres(train.n_classes, cfg.n_bits, seed=cfg.seed)
        logger.info("CSQ centres %s", info)
        module = HashTrainModule(
            encoder, classifier=None, centres=torch.from_numpy(c), train_classifier_backbone=False
        )
    module = module.to(ctx.device)
    clip_params = [
        p
        for n, p in module.named_parameters()
        if p.requires_grad and n.startswith(("centre_module", "classifier"))
    ]
    wrapped = ctx.prepare(module)
    params = [p for p in wrapped.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps1 = _n_batches(len(train), cfg.batch_size)
    steps2 = max(1, len(train) // cfg.batch_size)
    total_steps = max(1, cfg.transition_epoch * steps1 + cfg.stage2_epochs * steps2)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr_max, total_steps=total_steps, div_factor=cfg.lr_max / cfg.lr
    )
    sampler = GroupBatchSampler(train.targets.numpy() > 0, cfg.batch_size, cfg.n_pos, steps2)
    agg_gen = torch.Generator().manual_seed(cfg.seed + 7919 * (ctx.rank + 1))
    best_state, best_map, best_epoch = None, -1.0, -1
    step = 0
    n_epochs = cfg.transition_epoch + cfg.stage2_epochs
    for epoch in range(n_epochs):
        stage = 1 if epoch < cfg.transition_epoch else 2
        wrapped.train()
        t0, total, n = time.perf_counter(), 0.0, 0
        batches = (
            shuffled_batches(len(train), cfg.batch_size, rng)
            if stage == 1
            else sampler.batches(rng)
        )
        for idx in batches:
            set_ede_progress(encoder, step / total_steps)
            loss = _step_loss(wrapped, train, idx, stage, cfg, ctx, gen, agg_gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_params and cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(clip_params, cfg.grad_clip)
            opt.step()
            if step < total_steps:
                sched.step()
            step, total, n = step + 1, total + loss.item(), n + 1
        rec: dict[str, Any] = {
            "stage": stage,
            "epoch": epoch,
            "loss": total / max(n, 1),
            "epoch_s": time.perf_counter() - t0,
        }
        if val is not None and db is not None:
            rec["val_map"] = _validate(encoder, val, db, cfg, ctx.device)
        score = rec.get("val_map", float(epoch))
        if ctx.rank == 0 and score >= best_map:
            best_map, best_epoch = score, epoch
            best_state = copy.deepcopy(
                {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
            )
        history.append(rec)
        logger.info("stage %d epoch %d: %s", stage, epoch, rec)
        ctx.report(rec)
    state = (
        best_state
        if best_state is not None
        else {k: v.cpu() for k, v in encoder.state_dict().items()}
    )
    return FitResult(
        state_dict=state,
        n_classes=train.n_classes,
        image_size=int(train.images.shape[-1]),
        channels=in_ch,
        mean=full.mean,
        std=full.std,
        best_epoch=best_epoch,
        best_val_map=best_map if val is not None else None,
        history=history,
    )


def _step_loss(
    wrapped: nn.Module,
    train: TrainData,
    idx: np.ndarray,
    stage: int,
    cfg: TrainConfig,
    ctx: LoopContext,
    gen: torch.Generator,
    agg_gen: torch.Generator,
) -> torch.Tensor:
    x = train.images[idx]
    y = train.targets[idx].to(ctx.device)
    weak = train.normalise(augment(x, WEAK, gen)).to(ctx.device)
    odh = cfg.method == "odh"
    if stage == 1:
        u, centres, logits = wrapped(weak, weak)
        h = torch.tanh(u)
        if not odh:
            return csq_loss(h, multilabel_centres(centres, y, seed=cfg.seed), lam=cfg.csq_lambda)
        return hash_centre_loss(
            h, centres, y, tau=cfg.tau
        ) + cfg.w_cls_stage1 * classification_loss(logits, y)
    strong = train.normalise(augment(x, STRONG, gen)).to(ctx.device)
    u, centres, logits = wrapped(torch.cat([weak, strong]), strong)
    h = torch.tanh(u)
    h_weak, h_strong = h[: len(idx)], h[len(idx) :]
    if not odh:
        c = multilabel_centres(centres, y, seed=cfg.seed)
        return 0.5 * (
            csq_loss(h_weak, c, lam=cfg.csq_lambda) + csq_loss(h_strong, c, lam=cfg.csq_lambda)
        )
    l_hc = hash_centre_loss(h_weak, centres, y, tau=cfg.tau)
    l_agg = aggregation_loss(h_strong, h_weak, n_pos=cfg.n_pos, generator=agg_gen)
    return l_hc + cfg.w_agg * l_agg + cfg.w_cls_stage2 * classification_loss(logits, y)
