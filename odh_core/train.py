"""The public training entry point ``train_encoder`` (runs Ray Train); the configuration lives
in :mod:`odh_core.config` (re-exported here)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from odh_core.config import MODES, TrainConfig, TrainRunConfig, list_methods

__all__ = [
    "MODES",
    "TrainConfig",
    "TrainRunConfig",
    "check_arrays",
    "list_methods",
    "train_encoder",
]

_RUN = TrainRunConfig()  # the defaults of the keyword arguments below

logger = logging.getLogger(__name__)


def check_arrays(images: np.ndarray, labels: np.ndarray | None) -> None:
    """Validate training arrays at the public boundary (``labels`` None: an unlabelled set)."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(
            f"images must be uint8[n, H, W, C], got {getattr(images, 'dtype', type(images))}"
            f"{getattr(images, 'shape', '')}"
        )
    if images.shape[-1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {images.shape[-1]}")
    if images.shape[0] < 4:
        raise ValueError(f"need at least 4 training images, got {images.shape[0]}")
    if labels is None:
        return
    labels = np.asarray(labels)
    if labels.shape[0] != images.shape[0] or labels.ndim not in (1, 2):
        raise ValueError(
            f"labels must be int[n] or multi-hot [n, C] with n={images.shape[0]}, "
            f"got shape {labels.shape}"
        )


def train_encoder(
    images: np.ndarray,
    labels: np.ndarray | None,
    config: TrainConfig,
    output_dir: str,
    *,
    workers: int = _RUN.workers,
    use_gpu: bool = _RUN.use_gpu,
    resume: bool = _RUN.resume,
    max_failures: int = _RUN.max_failures,
    label_distance: np.ndarray | None = None,
    provenance: dict[str, Any] | None = None,
) -> str:
    """Train an encoder with Ray Train (``TorchTrainer``, DDP when workers > 1).

    Ray must already be initialised. Every epoch reports its metrics and a training-state
    checkpoint (model, optimiser, scheduler, epoch, RNG states) to Ray Train; a worker failure
    restarts the worker group from the latest one (``max_failures`` times). ``resume=True``
    continues the latest run recorded under ``output_dir``. Writes the best checkpoint (selected
    on validation tie-aware mAP) to ``<output_dir>/checkpoint`` and returns that path.
    ``labels`` None (an unlabelled set) is refused, before any work, by a method that needs
    labels; ``label_distance`` (``[C, C]`` in [0, 1]) comes from a class hierarchy;
    ``provenance`` (JSON values, e.g. the image set's ``data_split``) goes into the records.
    """
    from odh_core.distributed import run_ray_training

    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    TrainRunConfig(workers, use_gpu, resume, max_failures)  # validates, naming the field
    check_arrays(images, labels)
    from odh_core.stages import check_method_labels

    check_method_labels(config.method, config.create_method().needs_labels, labels is not None)
    if config.init_from:  # Ray workers may run in another directory: an absolute path
        import dataclasses
        import os

        if not os.path.exists(config.init_from):
            raise ValueError(f"TrainConfig.init_from: no checkpoint at {config.init_from!r}")
        config = dataclasses.replace(config, init_from=os.path.abspath(config.init_from))
    return run_ray_training(
        images,
        None if labels is None else np.asarray(labels),
        config,
        output_dir,
        workers=workers,
        use_gpu=use_gpu,
        resume=resume,
        max_failures=max_failures,
        label_distance=label_distance,
        provenance=provenance,
    )
