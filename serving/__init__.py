"""Serving: the Ray Serve query application and its client.

Public API (timm-style explicit re-exports). Names are imported lazily on first use (PEP 562), so
``import serving.<module>`` stays as light as that module.
"""

from __future__ import annotations

from odh_core.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "HttpConfig": "serving.config",
    "ODHClient": "serving.client",
    "ServeConfig": "serving.config",
    "build_app": "serving.app",
    "list_placements": "serving.config",
    "start_server": "serving.app",
    "stop_server": "serving.app",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
