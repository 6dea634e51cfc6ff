"""Ray Train wrapper: runs ``stages.fit`` in a ``TorchTrainer`` (DDP when workers > 1)."""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from typing import Any

import numpy as np

from odh_core.train import TrainConfig

logger = logging.getLogger(__name__)


def _encoder_config(cfg: TrainConfig, result: Any, extra: dict[str, Any]) -> Any:
    from odh_core.checkpoint import EncoderConfig

    return EncoderConfig(
        name=cfg.model,
        n_bits=cfg.n_bits,
        image_size=result.image_size,
        channels=result.channels,
        mean=tuple(result.mean),
        std=tuple(result.std),
        method=cfg.method,
        layer=cfg.layer,
        binary=cfg.binary,
        n_classes=result.n_classes,
        provenance={
            "train_config": cfg.to_dict(),
            "best_epoch": result.best_epoch,
            "best_val_map_all_tie_aware": result.best_val_map,
            "history": result.history,
            **extra,
        },
    )


def _train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker."""
    import ray
    import ray.train
    import ray.train.torch
    import torch

    from odh_core.checkpoint import save_checkpoint
    from odh_core.models import create_encoder
    from odh_core.stages import LoopContext, fit

    cfg = TrainConfig.from_dict(loop_config["config"])
    images = ray.get(loop_config["images_ref"])
    labels = ray.get(loop_config["labels_ref"])
    train_ctx = ray.train.get_context()
    rank, world = train_ctx.get_world_rank(), train_ctx.get_world_size()

    def report(metrics: dict[str, Any]) -> None:
        ray.train.report({k: v for k, v in metrics.items() if isinstance(v, int | float)})

    ctx = LoopContext(
        rank=rank,
        world_size=world,
        device=ray.train.torch.get_device(),
        prepare=lambda m: (
            ray.train.torch.prepare_model(m) if world > 1 else m.to(ray.train.torch.get_device())
        ),
        report=report,
    )
    t0 = time.perf_counter()
    result = fit(images, labels, cfg, ctx)
    wall = time.perf_counter() - t0
    final = {"best_epoch": result.best_epoch, "train_wall_s": wall}
    if result.best_val_map is not None:
        final["best_val_map"] = result.best_val_map
    if rank == 0:
        enc_cfg = _encoder_config(
            cfg, result, {"workers": world, "train_wall_s": wall, "n_train_images": len(images)}
        )
        model = create_encoder(
            cfg.model,
            n_bits=cfg.n_bits,
            binary=cfg.binary,
            layer=cfg.layer,
            in_channels=result.channels,
        )
        model.load_state_dict(result.state_dict, strict=True)
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(model, enc_cfg, tmp)
            ray.train.report(final, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report(final)
    del torch  # imported for side effects of device selection only


def run_ray_training(
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    output_dir: str,
    *,
    workers: int = 1,
    use_gpu: bool = False,
) -> str:
    """Run the training in a Ray Train ``TorchTrainer``; returns ``<output_dir>/checkpoint``."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from odh_core.checkpoint import load_checkpoint, save_checkpoint

    if not ray.is_initialized():
        raise RuntimeError("train_encoder needs an initialised Ray (call ray.init first)")
    out = os.path.abspath(output_dir)
    os.makedirs(out, exist_ok=True)
    storage = os.path.join(out, "ray_train")
    trainer = TorchTrainer(
        _train_loop_per_worker,
        train_loop_config={
            "config": config.to_dict(),
            "images_ref": ray.put(images),
            "labels_ref": ray.put(labels),
        },
        scaling_config=ScalingConfig(
            num_workers=workers, use_gpu=use_gpu, resources_per_worker={"CPU": 1}
        ),
        run_config=RunConfig(storage_path=storage, name=f"train-{uuid.uuid4().hex[:8]}"),
    )
    t0 = time.perf_counter()
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train finished without a checkpoint (error: {result.error})")
    with result.checkpoint.as_directory() as ckpt_dir:
        model, enc_cfg = load_checkpoint(ckpt_dir)
    target = os.path.join(out, "checkpoint")
    save_checkpoint(model, enc_cfg, target)
    logger.info(
        "training finished in %.1f s; checkpoint %s (metrics %s)",
        time.perf_counter() - t0,
        target,
        result.metrics,
    )
    return target
