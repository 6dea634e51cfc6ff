"""Initialise an encoder from a trained checkpoint (``TrainConfig.init_from``): e.g. a BNN from
its trained full-precision twin.

Tensors are matched by name and shape; the others keep their random initialisation. The full-
precision twin and the BNN share the stem, the 3×3 conv weights (the BNN's latent weights), the
BatchNorms, the shortcuts and the hash head; the BNN's RSign shifts and RPReLU have no
counterpart in the twin (its ``PReLU`` is named ``post.weight``, the BNN's ``post.prelu.weight``)
and stay as initialised.
"""

from __future__ import annotations

import logging
import os

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["load_init_weights", "match_state"]

MODEL_FILE = "model.safetensors"


def _read_state(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint directory (``model.safetensors``, as
    :func:`odh_core.checkpoint.save_checkpoint` writes it) or of a ``torch.save`` file of a
    state dict (loaded with ``weights_only=True``)."""
    if os.path.isdir(path):
        from odh_core.checkpoint import load_checkpoint

        model, _ = load_checkpoint(path)  # verifies the checksums
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
    if not os.path.isfile(path):
        raise ValueError(f"TrainConfig.init_from: no checkpoint at {path!r}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"TrainConfig.init_from: {path!r} does not hold a state dict of tensors")
    return state


def match_state(
    target: dict[str, torch.Tensor], source: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """(tensors of ``source`` whose name and shape match ``target``, names in both with another
    shape, names of ``target`` missing from ``source``)."""
    matched, shape_mismatch, missing = {}, [], []
    for name, value in target.items():
        if name not in source:
            missing.append(name)
        elif tuple(source[name].shape) != tuple(value.shape):
            shape_mismatch.append(name)
        else:
            matched[name] = source[name]
    return matched, shape_mismatch, missing


def load_init_weights(encoder: nn.Module, path: str) -> int:
    """Copy the tensors of the checkpoint at ``path`` whose name and shape match into
    ``encoder`` (in place); returns how many were loaded. ValueError when none matches (naming
    the mismatches)."""
    source = _read_state(path)
    target = encoder.state_dict()
    matched, shape_mismatch, missing = match_state(target, source)
    if not matched:
        raise ValueError(
            f"TrainConfig.init_from: no tensor of {path!r} matches the encoder in name and shape "
            f"(shape mismatches: {shape_mismatch[:8]}; names missing from the checkpoint: "
            f"{missing[:8]}; checkpoint names: {sorted(source)[:8]}): is it the same model and "
            "n_bits?"
        )
    encoder.load_state_dict(matched, strict=False)
    logger.info(
        "init_from %s: loaded %d of %d encoder tensors (%d shape mismatches, %d not in the "
        "checkpoint: %s)",
        path,
        len(matched),
        len(target),
        len(shape_mismatch),
        len(missing),
        ", ".join(missing[:12]) + (" …" if len(missing) > 12 else ""),
    )
    return len(matched)
