"""The hashing-method registry (the timm pattern): ``@register_method``, ``create_method``,
``list_methods``.

Each method lives in its own module of :mod:`odh_core.methods` and registers itself on import;
:func:`list_methods` imports the package, so the registry is complete whenever it is read.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from odh_core.registry import Registry

if TYPE_CHECKING:
    from odh_core.methods.base import HashMethod

logger = logging.getLogger(__name__)

__all__ = [
    "create_method",
    "get_method_class",
    "list_methods",
    "method_config",
    "register_method",
]

M = TypeVar("M", bound="type[HashMethod]")


def _load_all() -> None:
    import odh_core.methods  # noqa: F401  (its __init__ imports every method module)


_REGISTRY: Registry[type[HashMethod]] = Registry("hashing method", load_all=_load_all, sort=False)


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: register a :class:`~odh_core.methods.base.HashMethod` under ``name``."""

    def wrap(cls: M) -> M:
        if not dataclasses.is_dataclass(cls.config_class):
            raise TypeError(f"{cls.__name__}.config_class must be a dataclass")
        _REGISTRY.add(name, cls)
        cls.name = name
        return cls

    return wrap


def list_methods() -> list[str]:
    """The registered method names, in registration order."""
    return _REGISTRY.names()


def get_method_class(name: str) -> type[HashMethod]:
    """The method class registered as ``name`` (ValueError naming the choices otherwise)."""
    return _REGISTRY.get(name)


def method_config(name: str, values: dict[str, Any] | None = None) -> Any:
    """The method's frozen config from ``values`` (unknown keys are an error naming them)."""
    cls = get_method_class(name).config_class
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"method {name!r} has no option(s) {unknown}; its options are {sorted(known)}"
        )
    return cls(**values)


def create_method(name: str, **cfg: Any) -> HashMethod:
    """A fresh method object with its config built from ``cfg`` (validated)."""
    return get_method_class(name)(method_config(name, cfg))
