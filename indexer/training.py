"""The front door "train an encoder on an image set": load the protocol's training split (the one
split rule) and run odh_core's trainer (Ray Train) on it.

``odh train``, the demo (``cluster/demo.py``) and the benchmarks all train through
:func:`train_encoder`, so that every path reads the same images for training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from odh_core.config import TrainConfig, TrainRunConfig
from odh_core.options import option

if TYPE_CHECKING:
    import numpy as np

    from indexer.imageset import DatasetInfo

__all__ = [
    "TrainJobConfig",
    "data_split_record",
    "load_train_split",
    "train_encoder",
    "train_splits",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainJobConfig:
    """Where `odh train` reads the images and writes the checkpoint."""

    image_set: str = option(help="image set (its protocol's train split is used)", flag="--images")
    output: str = option(help="checkpoint directory")

    def __post_init__(self) -> None:
        for name in ("image_set", "output"):
            if not getattr(self, name):
                raise ValueError(f"TrainJobConfig.{name} is required")


def train_splits(info: DatasetInfo) -> list[str]:
    """The splits an image set trains on: its protocol's ``train_splits`` (``["train"]`` when it
    names no protocol)."""
    return list(info.protocol.train_splits) if info.protocol else ["train"]


def load_train_split(
    image_set: str, storage_options: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(uint8[n, H, W, C] images, multi-hot labels)`` of an image set's training split; the
    labels are None when the set has no ``label`` column (or only nulls in it)."""
    from indexer.imageset import load_arrays_unlabelled_ok, read_info

    splits = train_splits(read_info(image_set, storage_options))
    _, images, labels = load_arrays_unlabelled_ok(
        image_set, splits, storage_options=storage_options
    )
    if len(images) == 0:
        raise ValueError(f"{image_set}: the training split(s) {splits} hold no images")
    return images, labels


def train_encoder(
    image_set: str,
    config: TrainConfig,
    output: str,
    run: TrainRunConfig | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Train an encoder on ``image_set``'s training split into ``output``; returns the checkpoint
    path. Ray must already be initialised; ``run`` (workers, GPUs, resume, restarts) defaults to
    ``TrainRunConfig()``."""
    from odh_core.train import train_encoder as train_arrays

    if not isinstance(config, TrainConfig):
        raise TypeError(f"train_encoder: config must be a TrainConfig, got {type(config).__name__}")
    run = TrainRunConfig() if run is None else run
    if not isinstance(run, TrainRunConfig):
        raise TypeError(f"train_encoder: run must be a TrainRunConfig, got {type(run).__name__}")
    from indexer.imageset import has_label_column, read_info

    if config.create_method().needs_labels and not has_label_column(image_set, storage_options):
        raise ValueError(
            f"method {config.method!r} needs class labels, but the image set {image_set} has no "
            "'label' column (train it with a method that needs no labels, e.g. 'bdnn-unsup')"
        )
    images, labels = load_train_split(image_set, storage_options)
    info = read_info(image_set, storage_options)
    logger.info("training %s on %d images of %s", config.method, len(images), image_set)
    return train_arrays(
        images,
        labels,
        config,
        output,
        workers=run.workers,
        use_gpu=run.use_gpu,
        resume=run.resume,
        max_failures=run.max_failures,
        label_distance=info.label_distances() if labels is not None else None,
        provenance={"image_set": image_set, "data_split": data_split_record(info)},
    )


def data_split_record(info: DatasetInfo) -> dict[str, Any]:
    """The image set's query / train / database split (its protocol and the split's seed)."""
    proto = info.protocol
    if proto is None:
        return {"protocol": None, "seed": None, "train_splits": ["train"]}
    return {"protocol": proto.name, "seed": proto.seed, "train_splits": list(proto.train_splits)}
