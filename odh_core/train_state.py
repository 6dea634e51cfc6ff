"""Resumable training state on disk without pickle: tensors as safetensors, the rest as JSON.

A training state (``odh_core.stages``: model/optimiser/scheduler ``state_dict``s, epoch counters,
RNG states, history) is a tree of dicts, lists, tuples, scalars, strings, ``torch.Tensor`` and
``numpy.ndarray``. :func:`save_train_state` writes every tensor/array leaf to
``train_state.safetensors`` and the tree, with each leaf replaced by a reference, to
``train_state.json``; :func:`load_train_state` rebuilds the exact tree. Loading never unpickles
(``torch.load(weights_only=False)`` on a checkpoint would run arbitrary code), so a checkpoint
directory written by someone else can at worst be wrong, not hostile.

JSON cannot hold tuples, non-string dict keys (optimiser ``state`` is keyed by int), non-finite
floats portably or big ints in every reader, so those are tagged (``{"__tuple__": [...]}``,
``{"__dict__": [[key, value], ...]}``, ``{"__float__": "inf"}``); Python's ``json`` keeps big ints
(numpy's PCG64 state is 128-bit) exactly.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["STATE_JSON", "STATE_TENSORS", "has_train_state", "load_train_state", "save_train_state"]

#: The non-tensor part of the state (the tree, with references to the tensors).
STATE_JSON = "train_state.json"
#: The tensors of the state.
STATE_TENSORS = "train_state.safetensors"
_FORMAT = "odh-train-state/1"


def _encode(value: Any, tensors: dict[str, Any], path: str) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value).copy())
        return {"__ndarray__": key}
    if isinstance(value, np.generic):
        return _encode(value.item(), tensors, path)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{path}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, tensors, f"{path}.{k}") for k, v in value.items()}
        return {
            "__dict__": [
                [_encode(k, tensors, f"{path}<key>"), _encode(v, tensors, f"{path}[{k!r}]")]
                for k, v in value.items()
            ]
        }
    raise TypeError(
        f"train state: {path} is a {type(value).__name__}, which the safetensors+JSON "
        "state format cannot store (tensors, arrays, dicts, lists, tuples, scalars, str only)"
    )


def _decode(value: Any, tensors: dict[str, Any]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (tag, inner), *_ = value.items()
        if tag == "__tensor__":
            return tensors[inner]
        if tag == "__ndarray__":
            return tensors[inner].numpy()
        if tag == "__tuple__":
            return tuple(_decode(v, tensors) for v in inner)
        if tag == "__float__":
            return float(inner)
        if tag == "__dict__":
            return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in inner}
    return {k: _decode(v, tensors) for k, v in value.items()}


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def save_train_state(state: dict[str, Any], directory: str) -> None:
    """Write ``state`` as ``train_state.safetensors`` + ``train_state.json`` in ``directory``
    (``TypeError`` naming the path of a value the format cannot hold)."""
    from safetensors.torch import save_file

    tensors: dict[str, Any] = {}
    tree = _encode(state, tensors, "state")
    os.makedirs(directory, exist_ok=True)
    save_file(tensors, os.path.join(directory, STATE_TENSORS))
    with open(os.path.join(directory, STATE_JSON), "w") as fh:
        json.dump({"format": _FORMAT, "state": tree}, fh)


def has_train_state(directory: str) -> bool:
    """Whether ``directory`` holds a state written by :func:`save_train_state`."""
    return os.path.isfile(os.path.join(directory, STATE_JSON))


def load_train_state(directory: str) -> dict[str, Any]:
    """The state :func:`save_train_state` wrote (no unpickling anywhere)."""
    from safetensors.torch import load_file

    with open(os.path.join(directory, STATE_JSON)) as fh:
        doc = json.load(fh)
    if doc.get("format") != _FORMAT:
        raise ValueError(
            f"train state in {directory}: format {doc.get('format')!r}, expected {_FORMAT!r}"
        )
    tensors = load_file(os.path.join(directory, STATE_TENSORS))
    state = _decode(doc["state"], tensors)
    if not isinstance(state, dict):
        raise ValueError(f"train state in {directory}: the state is not a dict")
    return state
