"""The index-type registry (timm-style): ``register_index_type``, ``create_index_type``,
``list_index_types``, ``get_index_type``."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

_REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register_index_type(cls: T) -> T:
    """Class decorator: register an ``IndexType`` subclass under its ``name``."""
    name = getattr(cls, "name", "")
    if not name:
        raise ValueError(f"{cls.__name__}: an index type needs a non-empty name")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"index type {name!r} is already registered ({_REGISTRY[name].__name__})")
    _REGISTRY[name] = cls
    return cls


def _load_builtin() -> None:
    # importing the modules registers the built-in types
    from indexer.index_types import flat, hnsw, ivf  # noqa: F401


def list_index_types() -> list[str]:
    """Names of the registered index types, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def get_index_type(name: str) -> Any:
    """The adapter class registered as ``name``; ValueError naming ``index_type`` otherwise."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"index_type must be one of {sorted(_REGISTRY)}, got {name!r}")
    return _REGISTRY[name]


def make_params(name: str, params: dict[str, Any] | None) -> Any:
    """The validated params dataclass of type ``name`` from a dict (unknown keys: ValueError)."""
    import dataclasses

    cls = get_index_type(name).Params
    params = dict(params or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(
            f"index type {name!r} has no parameter(s) {unknown} (it takes {sorted(known)})"
        )
    return cls(**params)


def create_index_type(name: str, n_bits: int, **params: Any) -> Any:
    """A new, empty adapter of type ``name`` with build ``params`` (validated)."""
    return get_index_type(name)(n_bits, make_params(name, params))
