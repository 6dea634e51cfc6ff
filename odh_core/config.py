"""``TrainConfig``: the knobs every hashing method shares, the single source of their defaults.

A method's own knobs live in its frozen config class (:mod:`odh_core.methods`), given here as
``method_config`` (a JSON object on the command line) and validated by that class.

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
    "LEGACY_METHOD_KEYS",
    "MODES",
    "TrainConfig",
    "TrainRunConfig",
    "list_methods",
    "list_modes",
]

MODES = ("spec", "faithful")

# TrainConfig fields before methods became plug-ins → (method, key of its config)
LEGACY_METHOD_KEYS: dict[str, tuple[str, str]] = {
    "tau": ("odh", "tau"),
    "w_cls_stage1": ("odh", "w_cls_stage1"),
    "w_agg": ("odh", "w_agg"),
    "w_cls_stage2": ("odh", "w_cls_stage2"),
    "centres": ("odh", "centres"),
    "train_classifier_backbone": ("odh", "train_classifier_backbone"),
    "csq_lambda": ("csq", "lam"),
}


def list_methods() -> list[str]:
    """The hashing methods ``TrainConfig.method`` accepts (the method registry)."""
    from odh_core.methods import list_methods as registered

    return registered()


def list_modes() -> list[str]:
    """``spec`` (ALGORITHMS.md as written) or ``faithful`` (the reference code's quirks)."""
    return list(MODES)


def _list_encoders() -> list[str]:
    from odh_core.models import list_encoders

    return list_encoders()


def _list_layers() -> list[str]:
    from odh_core.layers import list_layers

    return list_layers()


def _list_kernels() -> list[str]:
    from odh_core.binary import KERNELS

    return list(KERNELS)


@dataclass(frozen=True)
class TrainConfig:
    """The training knobs every method shares (ALGORITHMS.md §2 defaults) + the method's own
    config as ``method_config`` (validated by the method's config class)."""

    model: str = option("resnet_small", help="encoder registry name", choices=_list_encoders)
    n_bits: int = option(64, help="code length (a positive multiple of 8)", flag="--bits")
    layer: str = option("reactnet", help="BNN layer variant", choices=_list_layers)
    binary: bool = option(
        True, help="train the full-precision twin (not binary)", flag="--full-precision"
    )
    method: str = option("odh", help="hashing method: %(choices)s", choices=list_methods)
    method_config: dict[str, Any] = option(
        default_factory=dict,
        help="the method's own options as a JSON object (docs/method.md lists them per method)",
    )
    warmup_epochs: int = option(
        2, help="stage-0 full-precision classifier epochs (methods that use a classifier)"
    )
    transition_epoch: int = option(
        3, help="stage-1 (exploration) epochs = transition epoch", flag="--stage1-epochs"
    )
    stage2_epochs: int = option(3, help="stage-2 (aggregation) epochs")
    batch_size: int = option(128, help="training batch size")
    lr: float = option(1e-4, help="OneCycle start learning rate")
    lr_max: float = option(1e-3, help="OneCycle peak learning rate")
    warmup_lr: float = option(1e-3, help="stage-0 classifier learning rate")
    weight_decay: float = option(1e-5, help="AdamW weight decay")
    grad_clip: float = option(5.0, help="gradient-norm clip on the method's own parameters")
    n_pos: int = option(2, help="positives per class in a batch")
    seed: int = option(0, help="random seed")
    val_fraction: float = option(0.1, help="share of the training images held out for validation")
    val_db_max: int = option(2000, help="validation database: at most this many training images")
    num_threads: int = option(1, help="torch threads per worker", flag="--threads")
    kernels: str = option(
        "fused",
        help="sign/estimator ops: fused (fast) or reference (the original elementwise chains, "
        "same results; for checking)",
        choices=_list_kernels,
    )
    channels_last: bool = option(
        False,
        help="train in the channels_last memory format (faster convolutions on CPU; they sum "
        "in another order, which in a BNN can move mAP like a change of seed; off by default "
        "so that run records keep their keys; make demo turns it on)",
    )
    compile_model: bool = option(
        False,
        help="torch.compile the training forward/backward (compile time ~1 min: pays off only "
        "on long runs; see odh bench train-speed)",
        flag="--compile",
    )
    two_step: bool = option(
        False,
        help="two-step BNN training: binary activations with the real latent weights for the "
        "first half of stage 1's steps, binary weights from then on; no weight decay on the "
        "latent binary conv weights (binary networks only; default: binary weights throughout)",
    )
    init_from: str = option(
        "",
        help="checkpoint directory of a trained encoder (e.g. the full-precision twin, same "
        "model and bits) whose tensors of matching name and shape initialise the encoder "
        "before stage 1 (default: random initialisation)",
    )
    mode: str = option(
        "spec",
        help="faithful: layer xnor is built as the reference code's weight-only XNOR",
        choices=list_modes,
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
        """Global epochs: warm-up (methods that use a classifier) + stage 1 + stage 2."""
        return self.n_warmup_epochs + self.transition_epoch + self.stage2_epochs

    @property
    def n_warmup_epochs(self) -> int:
        return self.warmup_epochs if self.create_method().needs_classifier else 0

    def parsed_method_config(self) -> Any:
        """The method's frozen config built from ``method_config``."""
        from odh_core.methods import method_config

        return method_config(self.method, self.method_config)

    def create_method(self) -> Any:
        """A fresh :class:`~odh_core.methods.base.HashMethod` for this configuration."""
        from odh_core.methods import create_method

        return create_method(self.method, **self.method_config)

    def __post_init__(self) -> None:
        from odh_core.packing import check_n_bits

        encoders = _list_encoders()
        if self.model not in encoders:
            raise ValueError(f"TrainConfig.model must be one of {encoders}, got {self.model!r}")
        layers = _list_layers()
        if self.layer not in layers:
            raise ValueError(f"TrainConfig.layer must be one of {layers}, got {self.layer!r}")
        methods = list_methods()
        if self.method not in methods:
            raise ValueError(f"TrainConfig.method must be one of {methods}, got {self.method!r}")
        if not isinstance(self.method_config, dict):
            raise TypeError(
                f"TrainConfig.method_config must be a dict, got {type(self.method_config).__name__}"
            )
        try:
            parsed = self.parsed_method_config()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"TrainConfig.method_config ({self.method}): {exc}") from exc
        if self.mode not in MODES:
            raise ValueError(f"TrainConfig.mode must be one of {MODES}, got {self.mode!r}")
        deviations = getattr(parsed, "reference_deviations", lambda: [])()
        if self.mode == "faithful" and deviations:
            raise ValueError(
                "TrainConfig.mode 'faithful' keeps the reference behaviour, but "
                f"TrainConfig.method_config sets {deviations} away from it"
            )
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
        if self.lr <= 0 or self.lr_max < self.lr:
            raise ValueError("TrainConfig: lr must be positive and lr_max >= lr")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"TrainConfig.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.num_threads < 1:
            raise ValueError(f"TrainConfig.num_threads must be >= 1, got {self.num_threads}")
        if not isinstance(self.init_from, str):
            raise TypeError(
                f"TrainConfig.init_from must be a path string, got {type(self.init_from).__name__}"
            )
        if self.two_step and not self.binary:
            raise ValueError("TrainConfig.two_step needs a binary network (binary=True)")
        kernels = _list_kernels()
        if self.kernels not in kernels:
            raise ValueError(f"TrainConfig.kernels must be one of {kernels}, got {self.kernels!r}")

    def to_dict(self) -> dict[str, Any]:
        """All fields as given (``from_dict`` round-trips them)."""
        return dataclasses.asdict(self)

    def full_method_config(self) -> dict[str, Any]:
        """The method's config with every knob (its defaults filled in), for records."""
        return dataclasses.asdict(self.parsed_method_config())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """A dict → TrainConfig; the method knobs of older configs (``tau``, ``csq_lambda``, …
        as top-level keys) move into ``method_config`` of the method they belong to (and are
        dropped for another method)."""
        data = dict(data)
        method = data.get("method", "odh")
        moved = dict(data.get("method_config") or {})
        for key, (owner, name) in LEGACY_METHOD_KEYS.items():
            if key in data:
                value = data.pop(key)
                if owner == method:
                    moved.setdefault(name, value)
        if moved or "method_config" in data:
            data["method_config"] = moved
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
