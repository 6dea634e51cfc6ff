"""``TrainConfig``: every knob of the ODH / CSQ training, the single source of its defaults.

A light module (no torch): the ``odh train`` command line and ``docs/cli.md`` are generated from
these fields, and ``odh_core.train`` / ``odh_core.distributed`` / ``odh_core.stages`` all import
the config from here (so none of them imports another for it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from odh_core.options import option

__all__ = [
    "CENTRES",
    "METHODS",
    "MODES",
    "TrainConfig",
    "TrainRunConfig",
    "list_centres",
    "list_methods",
    "list_modes",
]

METHODS = ("odh", "csq")
MODES = ("spec", "faithful")
CENTRES = ("semantic", "hadamard")


def list_methods() -> list[str]:
    """The hashing methods ``TrainConfig.method`` accepts."""
    return list(METHODS)


def list_modes() -> list[str]:
    """``spec`` (ALGORITHMS.md as written) or ``faithful`` (the reference code's quirks)."""
    return list(MODES)


def list_centres() -> list[str]:
    """The ODH hash-centre kinds."""
    return list(CENTRES)


def _list_encoders() -> list[str]:
    from odh_core.models import list_encoders

    return list_encoders()


def _list_layers() -> list[str]:
    from odh_core.layers import list_layers

    return list_layers()


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of the ODH / CSQ training (ALGORITHMS.md §2, §3 defaults)."""

    model: str = option("resnet_small", help="encoder registry name", choices=_list_encoders)
    n_bits: int = option(64, help="code length (a positive multiple of 8)", flag="--bits")
    layer: str = option("reactnet", help="BNN layer variant", choices=_list_layers)
    binary: bool = option(
        True, help="train the full-precision twin (not binary)", flag="--full-precision"
    )
    method: str = option("odh", help="hashing method", choices=list_methods)
    warmup_epochs: int = option(2, help="stage-0 full-precision classifier epochs (ODH only)")
    transition_epoch: int = option(
        3, help="stage-1 (exploration) epochs = transition epoch", flag="--stage1-epochs"
    )
    stage2_epochs: int = option(3, help="stage-2 (aggregation) epochs")
    batch_size: int = option(128, help="training batch size")
    lr: float = option(1e-4, help="OneCycle start learning rate")
    lr_max: float = option(1e-3, help="OneCycle peak learning rate")
    warmup_lr: float = option(1e-3, help="stage-0 classifier learning rate")
    weight_decay: float = option(1e-5, help="AdamW weight decay")
    grad_clip: float = option(5.0, help="gradient-norm clip on the centre MLP + classifier")
    tau: float = option(0.2, help="temperature of the hash-centre loss")
    n_pos: int = option(2, help="positives per class in a batch")
    w_cls_stage1: float = option(1e-3, help="classification-loss weight in stage 1")
    w_agg: float = option(1e-3, help="aggregation-loss weight in stage 2")
    w_cls_stage2: float = option(1e-4, help="classification-loss weight in stage 2")
    csq_lambda: float = option(1e-4, help="CSQ quantisation-loss weight")
    train_classifier_backbone: bool = option(
        False, help="let L_cls train the backbone too (default: W (+BN) only, backbone frozen)"
    )
    seed: int = option(0, help="random seed")
    val_fraction: float = option(0.1, help="share of the training images held out for validation")
    val_db_max: int = option(2000, help="validation database: at most this many training images")
    num_threads: int = option(1, help="torch threads per worker", flag="--threads")
    mode: str = option(
        "spec",
        help="faithful: the reference code's quirks (weight-only XNOR, pre-split stage-2 pools)",
        choices=list_modes,
    )
    centres: str = option(
        "semantic",
        help="ODH hash centres (hadamard: fixed CSQ centres, an ablation)",
        choices=list_centres,
    )
    fail_at_epoch: int = option(
        -1, help="test hook: rank 0 exits once after this global epoch's checkpoint", cli=False
    )

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
        from odh_core.packing import check_n_bits

        encoders = _list_encoders()
        if self.model not in encoders:
            raise ValueError(f"TrainConfig.model must be one of {encoders}, got {self.model!r}")
        layers = _list_layers()
        if self.layer not in layers:
            raise ValueError(f"TrainConfig.layer must be one of {layers}, got {self.layer!r}")
        if self.method not in METHODS:
            raise ValueError(f"TrainConfig.method must be one of {METHODS}, got {self.method!r}")
        if self.mode not in MODES:
            raise ValueError(f"TrainConfig.mode must be one of {MODES}, got {self.mode!r}")
        if self.centres not in CENTRES:
            raise ValueError(f"TrainConfig.centres must be one of {CENTRES}, got {self.centres!r}")
        check_n_bits(self.n_bits, "TrainConfig.n_bits")
        for name in ("warmup_epochs", "transition_epoch", "stage2_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
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


@dataclass(frozen=True)
class TrainRunConfig:
    """How Ray Train runs a training: workers, GPUs, resume and restarts."""

    workers: int = option(1, help="Ray Train workers (DDP: gloo on CPU, nccl on GPU)")
    use_gpu: bool = option(False, help="one GPU per Ray Train worker", flag="--gpu")
    resume: bool = option(
        False, help="continue the latest run in --output from its last per-epoch checkpoint"
    )
    max_failures: int = option(
        2, help="worker-group restarts from the last checkpoint after a worker failure"
    )

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"TrainRunConfig.workers must be >= 1, got {self.workers}")
        if self.max_failures < -1:
            raise ValueError(f"TrainRunConfig.max_failures must be >= -1, got {self.max_failures}")
