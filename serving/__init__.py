"""Serving: the Ray Serve query application and its client.

Public API (timm-style explicit re-exports). Names are imported lazily on first use (PEP 562), so
``import serving.<module>`` stays as light as that module.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "HttpConfig": "serving.config",
    "ODHClient": "serving.client",
    "ServeConfig": "serving.config",
    "build_app": "serving.app",
    "list_placements": "serving.config",
    "start_server": "serving.app",
    "stop_server": "serving.app",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
