"""Lazy public re-exports for package ``__init__`` modules (PEP 562).

Each package names its public API once, as ``{name: defining module}``; a name is imported on
use, so that ``import package.light_module`` (the CLI's configs) pulls in no torch, Ray or FAISS::

    __all__, __getattr__, __dir__ = lazy_exports(__name__, {"build": "indexer.build"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``__all__``, ``__getattr__`` and ``__dir__`` of ``package`` for the given exports."""
    table = dict(exports)
    names = sorted(table)

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(table[name]), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return names, __getattr__, __dir__
