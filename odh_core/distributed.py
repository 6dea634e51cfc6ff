"""Ray Train wrapper: runs ``stages.fit`` in a ``TorchTrainer`` (DDP when workers > 1).

Every epoch each worker calls ``ray.train.report``; rank 0 attaches a checkpoint directory with
``train_state.safetensors`` + ``train_state.json`` (model, optimiser, scheduler, epoch, RNG
states, best state so far; ``odh_core.train_state``: resuming never unpickles). A restarted worker
group (``FailureConfig(max_failures=...)``) and a ``resume=True`` run pick the latest one up
with ``ray.train.get_checkpoint()``. The last report carries the exported encoder checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import uuid
from typing import Any

import numpy as np

from odh_core.config import TrainConfig

logger = logging.getLogger(__name__)

STATE_FILE = "train_state.json"  # + train_state.safetensors (odh_core.train_state)
LATEST_RUN_FILE = "LATEST_RUN"
RESULT_FILE = "train_result.json"


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
        layer=cfg.effective_layer,
        binary=cfg.binary,
        n_classes=result.n_classes or None,
        provenance={
            "train_config": cfg.to_dict(),
            "method_config": cfg.full_method_config(),
            "method_info": result.method_info,
            "best_epoch": result.best_epoch,
            "best_val_map_all_tie_aware": result.best_val_map,
            "history": result.history,
            "resumed_from_global_epoch": result.resumed_from,
            "val_split": val_split_record(cfg),
            "determinism": result.determinism,
            **extra,
        },
    )


def val_split_record(cfg: TrainConfig) -> dict[str, Any]:
    """How the training images were split into train / validation (``data.split_indices``)."""
    return {"seed": cfg.seed, "fraction": cfg.val_fraction, "db_max": cfg.val_db_max}


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}


def _maybe_fail(cfg: TrainConfig, rank: int, global_epoch: int, storage_dir: str) -> None:
    """Test hook: rank 0 dies once (first attempt only, marker file) after ``fail_at_epoch``."""
    if cfg.fail_at_epoch != global_epoch or rank != 0:
        return
    marker = os.path.join(storage_dir, f"killed-at-epoch-{global_epoch}")
    if os.path.exists(marker):
        return
    with open(marker, "w") as fh:
        fh.write(str(os.getpid()))
    # let the controller collect this epoch's report (it polls workers every ~2 s), as a real
    # crash in the middle of the next epoch would
    time.sleep(5.0)
    logger.warning("fail_at_epoch=%d: killing training worker %d", global_epoch, os.getpid())
    os._exit(1)


def _train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker."""
    import ray
    import ray.train
    import ray.train.torch

    from odh_core.checkpoint import save_checkpoint
    from odh_core.models import create_encoder
    from odh_core.progress_relay import forward_progress
    from odh_core.stages import LoopContext, fit
    from odh_core.train_state import load_train_state, save_train_state

    cfg = TrainConfig.from_dict(loop_config["config"])
    storage_dir = loop_config["storage_dir"]
    images = ray.get(loop_config["images_ref"])
    labels = ray.get(loop_config["labels_ref"])
    train_ctx = ray.train.get_context()
    rank, world = train_ctx.get_world_rank(), train_ctx.get_world_size()
    forward_progress(loop_config.get("progress_queue"), rank)
    device = ray.train.torch.get_device()

    initial_state = None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as ckpt_dir:
            initial_state = load_train_state(ckpt_dir)
        logger.info("rank %d resumes after global epoch %d", rank, initial_state["global_epoch"])
    holder: dict[str, Any] = {"state": initial_state}

    def end_epoch(metrics: dict[str, Any], state_fn: Any) -> None:
        g = int(metrics["global_epoch"])
        if rank == 0:
            state = state_fn()
            holder["state"] = state
            with tempfile.TemporaryDirectory() as tmp:
                save_train_state(state, tmp)
                ray.train.report(
                    _scalars(metrics),
                    checkpoint=ray.train.Checkpoint.from_directory(tmp),
                    checkpoint_dir_name=f"epoch-{g:04d}",
                )
        else:
            ray.train.report(_scalars(metrics))
        _maybe_fail(cfg, rank, g, storage_dir)

    ctx = LoopContext(
        rank=rank,
        world_size=world,
        device=device,
        prepare=lambda m: ray.train.torch.prepare_model(m) if world > 1 else m.to(device),
        end_epoch=end_epoch,
        initial_state=initial_state,
    )
    t0 = time.perf_counter()
    result = fit(images, labels, cfg, ctx, label_distance=loop_config.get("label_distance"))
    wall = time.perf_counter() - t0
    final: dict[str, Any] = {"best_epoch": result.best_epoch, "train_wall_s": wall, "final": 1}
    if result.best_val_map is not None:
        final["best_val_map"] = result.best_val_map
    if result.resumed_from is not None:
        final["resumed_from"] = result.resumed_from
    if rank != 0:
        ray.train.report(final)
        return
    extra = {"workers": world, "train_wall_s": wall, "n_train_images": len(images)}
    enc_cfg = _encoder_config(cfg, result, {**loop_config.get("provenance", {}), **extra})
    model = create_encoder(
        cfg.model,
        n_bits=cfg.n_bits,
        binary=cfg.binary,
        layer=cfg.effective_layer,
        in_channels=result.channels,
    )
    model.load_state_dict(result.state_dict, strict=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(model, enc_cfg, tmp)
        if holder["state"] is not None:  # so that resuming a finished run finds a state
            save_train_state(holder["state"], tmp)
        ray.train.report(final, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _run_name(storage: str, resume: bool) -> str:
    latest = os.path.join(storage, LATEST_RUN_FILE)
    if resume:
        if not os.path.isfile(latest):
            raise FileNotFoundError(f"resume: no previous training run recorded in {latest}")
        with open(latest) as fh:
            return fh.read().strip()
    name = f"train-{uuid.uuid4().hex[:8]}"
    with open(latest, "w") as fh:
        fh.write(name)
    return name


def run_ray_training(
    images: np.ndarray,
    labels: np.ndarray | None,
    config: TrainConfig,
    output_dir: str,
    *,
    workers: int = 1,
    use_gpu: bool = False,
    resume: bool = False,
    max_failures: int = 2,
    label_distance: np.ndarray | None = None,
    provenance: dict[str, Any] | None = None,
) -> str:
    """Run the training in a Ray Train ``TorchTrainer``; returns ``<output_dir>/checkpoint``.

    ``provenance`` (JSON values, e.g. the image set and its ``data_split`` seed) is recorded in
    the checkpoint's ``config.json`` provenance and in ``train_result.json``.
    ``resume=True`` reuses the run name recorded in ``<output_dir>/ray_train/LATEST_RUN``, so Ray
    Train restores that run's checkpoint manager and the workers continue from its latest epoch.
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from odh_core.checkpoint import load_checkpoint, save_checkpoint
    from odh_core.progress_relay import ProgressRelay

    if not ray.is_initialized():
        raise RuntimeError("train_encoder needs an initialised Ray (call ray.init first)")
    out = os.path.abspath(output_dir)
    storage = os.path.join(out, "ray_train")
    os.makedirs(storage, exist_ok=True)
    name = _run_name(storage, resume)
    relay = ProgressRelay()
    trainer = TorchTrainer(
        _train_loop_per_worker,
        train_loop_config={
            "config": config.to_dict(),
            "images_ref": ray.put(images),
            "labels_ref": ray.put(labels),
            "label_distance": label_distance,
            "storage_dir": storage,
            "progress_queue": relay.queue,
            "provenance": dict(provenance or {}),
        },
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=workers, use_gpu=use_gpu, resources_per_worker={"CPU": 1}
        ),
        run_config=RunConfig(
            storage_path=storage,
            name=name,
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    t0 = time.perf_counter()
    try:
        result = trainer.fit()
    finally:
        relay.close()
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train finished without a checkpoint (error: {result.error})")
    with result.checkpoint.as_directory() as ckpt_dir:
        model, enc_cfg = load_checkpoint(ckpt_dir)
    target = os.path.join(out, "checkpoint")
    save_checkpoint(model, enc_cfg, target)
    prov = enc_cfg.provenance
    summary = {
        "run_name": name,
        "seed": config.seed,
        "val_split": prov.get("val_split", val_split_record(config)),
        **{k: prov[k] for k in sorted(provenance or {}) if k in prov},
        "method_info": prov.get("method_info", {}),
        "determinism": prov.get("determinism", {}),
        "metrics": _scalars(dict(result.metrics or {})),
        "history": enc_cfg.provenance.get("history", []),
        "resumed_from_global_epoch": enc_cfg.provenance.get("resumed_from_global_epoch"),
        "ray_checkpoint": result.checkpoint.path,
        "wall_s": time.perf_counter() - t0,
    }
    with open(os.path.join(out, RESULT_FILE), "w") as fh:
        json.dump(summary, fh, indent=2)
    logger.info("training finished in %.1f s; checkpoint %s", summary["wall_s"], target)
    return target
