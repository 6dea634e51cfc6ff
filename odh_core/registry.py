"""One small generic name → class registry (the timm pattern) shared by the project's registries:
hashing methods (``odh_core.methods.registry``) and index types (``indexer.index_types.registry``).

A ``Registry[T]`` maps names to objects (usually classes) registered by a decorator, can import
the modules of built-in entries on first use (so that naming the entries — CLI choices, config
validation — imports nothing heavy), and refuses unknown names with a ValueError naming the known
ones.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Named entries of one kind.

    ``kind``: what an entry is, in messages (``"index type"``); ``field``: the name an unknown
    entry is reported under (``"index_type"``; default ``kind``). ``modules``: built-in names and
    the module that registers each, imported on the first ``get`` of that name. ``load_all``:
    called before every read (e.g. importing a package whose modules register themselves).
    ``sort``: ``names()`` sorted (else in registration order, built-ins first).
    """

    def __init__(
        self,
        kind: str,
        *,
        field: str | None = None,
        modules: Mapping[str, str] | None = None,
        load_all: Callable[[], None] | None = None,
        sort: bool = True,
    ) -> None:
        self.kind = kind
        self.field = field or kind
        self._modules = dict(modules or {})
        self._load_all = load_all
        self._sort = sort
        self._entries: dict[str, T] = {}

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` as ``name``; the same name for another object is a ValueError."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind}: a registered name must be a non-empty string")
        old = self._entries.get(name)
        if old is not None and old is not obj:
            raise ValueError(
                f"{self.kind} {name!r} is already registered ({getattr(old, '__name__', old)})"
            )
        self._entries[name] = obj
        return obj

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`: ``@registry.register("ivf")``."""

        def wrap(obj: T) -> T:
            return self.add(name, obj)

        return wrap

    def names(self) -> list[str]:
        """Every known name (registered and built-in)."""
        if self._load_all is not None:
            self._load_all()
        names = list(dict.fromkeys([*self._modules, *self._entries]))
        return sorted(names) if self._sort else names

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def get(self, name: str) -> T:
        """The entry registered as ``name``; ValueError naming ``field`` and the known names."""
        if self._load_all is not None:
            self._load_all()
        if name not in self._entries and isinstance(name, str) and name in self._modules:
            importlib.import_module(self._modules[name])  # registers it
        if name not in self._entries:
            raise ValueError(f"{self.field} must be one of {self.names()}, got {name!r}")
        return self._entries[name]

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``get(name)(*args, **kwargs)``."""
        return self.get(name)(*args, **kwargs)  # type: ignore[operator]
