"""The index-type registry (timm-style): ``register_index_type``, ``create_index_type``,
``list_index_types``, ``get_index_type``."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from odh_core.registry import Registry

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=type)

#: The built-in types and their modules, imported on first use (so that naming the types — the
#: CLI's choices, manifest validation — imports neither FAISS nor numba).
_BUILTIN: dict[str, str] = {
    "flat": "indexer.index_types.flat",
    "hnsw": "indexer.index_types.hnsw",
    "ivf": "indexer.index_types.ivf",
}
_REGISTRY: Registry[type] = Registry("index type", field="index_type", modules=_BUILTIN)


def register_index_type(cls: T) -> T:
    """Class decorator: register an ``IndexType`` subclass under its ``name``."""
    name = getattr(cls, "name", "")
    if not name:
        raise ValueError(f"{cls.__name__}: an index type needs a non-empty name")
    return _REGISTRY.add(name, cls)


def list_index_types() -> list[str]:
    """Names of the index types (built-in and registered), sorted."""
    return _REGISTRY.names()


def get_index_type(name: str) -> Any:
    """The adapter class registered as ``name``; ValueError naming ``index_type`` otherwise."""
    return _REGISTRY.get(name)


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
