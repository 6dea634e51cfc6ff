"""Encoder checkpoints: ``model.safetensors`` + ``config.json`` + ``checksums.json`` (sha256s).

Files are written to temporary names and renamed, so a reader never sees a half-written checkpoint.
Local paths and fsspec URLs (e.g. ``s3://``) are supported; loading verifies the checksums.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from odh_core import formats
from odh_core.packing import check_n_bits

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CHECKSUMS_FILE = "checksums.json"


class CheckpointError(ValueError):
    """A checkpoint is missing files, fails its checksum or does not match its config."""


@dataclass(frozen=True)
class EncoderConfig:
    """Everything needed to rebuild and feed an encoder."""

    name: str
    n_bits: int
    image_size: int = 28
    channels: int = 1
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    method: str = "odh"
    layer: str = "reactnet"
    binary: bool = True
    n_classes: int | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    __json_source__: ClassVar[str] = CONFIG_FILE

    def __post_init__(self) -> None:
        check_n_bits(self.n_bits, "EncoderConfig.n_bits")
        if self.channels not in (1, 3):
            raise ValueError(f"EncoderConfig.channels must be 1 or 3: {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError("EncoderConfig.mean/std must have one value per channel")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"EncoderConfig.std must be positive: {self.std}")

    def to_json(self) -> str:
        """The ``config.json`` text (sorted keys, 2-space indent)."""
        return json.dumps(formats.to_json(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = CONFIG_FILE) -> EncoderConfig:
        """A parsed ``config.json`` → EncoderConfig (policy of :mod:`odh_core.formats`)."""
        return formats.from_json(cls, data, source, error=CheckpointError)


def _fs(path: str) -> tuple[Any, str]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(str(path))
    return fs, root.rstrip("/")


def _write_atomic(fs: Any, target: str, data: bytes) -> None:
    tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open(tmp, "wb") as fh:
        fh.write(data)
    fs.mv(tmp, target)


def save_checkpoint(model: nn.Module, config: EncoderConfig, path: str) -> str:
    """Write ``model``'s state_dict and ``config`` to the checkpoint directory ``path``."""
    from safetensors.torch import save

    module = getattr(model, "module", model)  # unwrap DDP
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    model_bytes = save(state)
    config_bytes = config.to_json().encode()
    fs, root = _fs(path)
    fs.makedirs(root, exist_ok=True)
    sums = {
        MODEL_FILE: hashlib.sha256(model_bytes).hexdigest(),
        CONFIG_FILE: hashlib.sha256(config_bytes).hexdigest(),
    }
    _write_atomic(fs, f"{root}/{MODEL_FILE}", model_bytes)
    _write_atomic(fs, f"{root}/{CONFIG_FILE}", config_bytes)
    _write_atomic(fs, f"{root}/{CHECKSUMS_FILE}", json.dumps(sums, indent=2).encode())
    logger.info("saved checkpoint %s (%d tensors)", path, len(state))
    return str(path)


def _read(fs: Any, target: str) -> bytes:
    if not fs.exists(target):
        raise CheckpointError(f"checkpoint file missing: {target}")
    with fs.open(target, "rb") as fh:
        return fh.read()


def checkpoint_sha256(path: str) -> str:
    """One sha256 identifying the checkpoint (hash of its checksums.json)."""
    fs, root = _fs(path)
    return hashlib.sha256(_read(fs, f"{root}/{CHECKSUMS_FILE}")).hexdigest()


def load_checkpoint(path: str, device: str = "cpu") -> tuple[nn.Module, EncoderConfig]:
    """Load and verify a checkpoint; returns the encoder (eval mode) and its config."""
    from safetensors.torch import load

    from odh_core.models import create_encoder

    fs, root = _fs(path)
    sums = json.loads(_read(fs, f"{root}/{CHECKSUMS_FILE}"))
    blobs = {}
    for name in (MODEL_FILE, CONFIG_FILE):
        blob = _read(fs, f"{root}/{name}")
        digest = hashlib.sha256(blob).hexdigest()
        if sums.get(name) != digest:
            raise CheckpointError(
                f"sha256 mismatch for {root}/{name}: {digest} != {sums.get(name)}"
            )
        blobs[name] = blob
    config = EncoderConfig.from_dict(json.loads(blobs[CONFIG_FILE]))
    state = load(blobs[MODEL_FILE])
    model = create_encoder(
        config.name,
        n_bits=config.n_bits,
        binary=config.binary,
        layer=config.layer,
        n_classes=config.n_classes if "classifier.weight" in state else None,
        in_channels=config.channels,
    )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"state_dict in {root} does not match {config.name}: {exc}") from exc
    model.to(torch.device(device)).eval()
    return model, config
