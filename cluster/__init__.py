"""Cluster: the `odh` command line, the Ray runtime, the index job, the demo.

Public API (timm-style explicit re-exports). Names are imported lazily on first use (PEP 562), so
``import cluster.<module>`` stays as light as that module.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "DemoConfig": "cluster.demo",
    "IndexJobConfig": "cluster.index_job",
    "LocalClusterConfig": "cluster.local_cluster",
    "RuntimeConfig": "cluster.runtime",
    "index": "cluster.index_job",
    "main": "cluster.cli",
    "ray_runtime": "cluster.runtime",
    "run_demo": "cluster.demo",
    "submit_index_job": "cluster.index_job",
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
