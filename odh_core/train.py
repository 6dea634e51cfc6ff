"""Training configuration and the public entry point ``train_encoder`` (runs Ray Train)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

METHODS = ("odh", "csq")
MODES = ("spec", "faithful")
CENTRES = ("semantic", "hadamard")


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of the ODH / CSQ training (ALGORITHMS.md §2, §3 defaults)."""

    model: str = "resnet_small"
    n_bits: int = 64
    layer: str = "reactnet"
    binary: bool = True
    method: str = "odh"
    warmup_epochs: int = 2  # stage 0: full-precision classifier (ODH only)
    transition_epoch: int = 3  # stage 1 epochs ("space exploration")
    stage2_epochs: int = 3  # stage 2 epochs ("code aggregation")
    batch_size: int = 128
    lr: float = 1e-4  # OneCycle starts here ...
    lr_max: float = 1e-3  # ... and peaks here
    warmup_lr: float = 1e-3
    weight_decay: float = 1e-5
    grad_clip: float = 5.0  # on centre MLP + classifier
    tau: float = 0.2
    n_pos: int = 2
    w_cls_stage1: float = 1e-3
    w_agg: float = 1e-3
    w_cls_stage2: float = 1e-4
    csq_lambda: float = 1e-4
    train_classifier_backbone: bool = False  # False: L_cls trains W (+BN) only, backbone frozen
    seed: int = 0
    val_fraction: float = 0.1
    val_db_max: int = 2000  # validation database = at most this many training images
    num_threads: int = 1
    # "spec": ALGORITHMS.md as written. "faithful": the reference code's quirks — layer "xnor"
    # keeps real activations (weight-only binarisation) and the stage-2 class pools are built
    # before the train/validation split (validation images leak into stage-2 batches).
    mode: str = "spec"
    # ODH centres: "semantic" (self-adaptive, the method) or "hadamard" (fixed CSQ centres; an
    # ablation that keeps L_hc/L_agg but drops the warm-up classifier and the centre MLP)
    centres: str = "semantic"
    fail_at_epoch: int = -1  # test hook: rank 0 exits once after this global epoch's checkpoint

    @property
    def effective_layer(self) -> str:
        """The layer config actually built (``xnor_weight_only`` for faithful-mode ``xnor``)."""
        if self.mode == "faithful" and self.layer == "xnor":
            return "xnor_weight_only"
        return self.layer

    @property
    def n_epochs(self) -> int:
        """Global epochs: warm-up (ODH with semantic centres only) + stage 1 + stage 2."""
        return self.n_warmup_epochs + self.transition_epoch + self.stage2_epochs

    @property
    def n_warmup_epochs(self) -> int:
        uses_classifier = self.method == "odh" and self.centres == "semantic"
        return self.warmup_epochs if uses_classifier else 0

    def __post_init__(self) -> None:
        from odh_core.layers import LAYER_CONFIGS
        from odh_core.models import list_encoders

        if self.model not in list_encoders():
            raise ValueError(
                f"TrainConfig.model must be one of {list_encoders()}, got {self.model!r}"
            )
        if self.layer not in LAYER_CONFIGS:
            raise ValueError(
                f"TrainConfig.layer must be one of {sorted(LAYER_CONFIGS)}, got {self.layer!r}"
            )
        if self.method not in METHODS:
            raise ValueError(f"TrainConfig.method must be one of {METHODS}, got {self.method!r}")
        if self.mode not in MODES:
            raise ValueError(f"TrainConfig.mode must be one of {MODES}, got {self.mode!r}")
        if self.centres not in CENTRES:
            raise ValueError(f"TrainConfig.centres must be one of {CENTRES}, got {self.centres!r}")
        if self.n_bits <= 0 or self.n_bits % 8:
            raise ValueError(
                f"TrainConfig.n_bits must be a positive multiple of 8, got {self.n_bits}"
            )
        for name in ("warmup_epochs", "transition_epoch", "stage2_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0")
        if self.transition_epoch + self.stage2_epochs < 1:
            raise ValueError("TrainConfig: transition_epoch + stage2_epochs must be >= 1")
        if self.n_pos < 1 or self.batch_size < 2 * self.n_pos:
            raise ValueError(
                "TrainConfig: need n_pos >= 1 and batch_size >= 2·n_pos, "
                f"got n_pos={self.n_pos}, batch_size={self.batch_size}"
            )
        if self.tau <= 0 or self.lr <= 0 or self.lr_max < self.lr:
            raise ValueError("TrainConfig: tau and lr must be positive and lr_max >= lr")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"TrainConfig.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.num_threads < 1:
            raise ValueError(f"TrainConfig.num_threads must be >= 1, got {self.num_threads}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**data)


def check_arrays(images: np.ndarray, labels: np.ndarray) -> None:
    """Validate training arrays at the public boundary."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(
            f"images must be uint8[n, H, W, C], got {getattr(images, 'dtype', type(images))}"
            f"{getattr(images, 'shape', '')}"
        )
    if images.shape[-1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {images.shape[-1]}")
    labels = np.asarray(labels)
    if labels.shape[0] != images.shape[0] or labels.ndim not in (1, 2):
        raise ValueError(
            f"labels must be int[n] or multi-hot [n, C] with n={images.shape[0]}, "
            f"got shape {labels.shape}"
        )
    if images.shape[0] < 4:
        raise ValueError(f"need at least 4 training images, got {images.shape[0]}")


def train_encoder(
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    output_dir: str,
    *,
    workers: int = 1,
    use_gpu: bool = False,
    resume: bool = False,
    max_failures: int = 2,
) -> str:
    """Train an encoder with Ray Train (``TorchTrainer``, DDP when workers > 1).

    Ray must already be initialised. Every epoch reports its metrics and a training-state
    checkpoint (model, optimiser, scheduler, epoch, RNG states) to Ray Train; a worker failure
    restarts the worker group from the latest one (``max_failures`` times). ``resume=True``
    continues the latest run recorded under ``output_dir``. Writes the best checkpoint (selected
    on validation tie-aware mAP) to ``<output_dir>/checkpoint`` and returns that path.
    """
    from odh_core.distributed import run_ray_training

    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if max_failures < -1:
        raise ValueError(f"max_failures must be >= -1, got {max_failures}")
    check_arrays(images, labels)
    return run_ray_training(
        images,
        np.asarray(labels),
        config,
        output_dir,
        workers=workers,
        use_gpu=use_gpu,
        resume=resume,
        max_failures=max_failures,
    )
