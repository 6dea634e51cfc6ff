"""Indexer: image sets, the encode job, sharded FAISS index builds and updates.

Public API (timm-style explicit re-exports). Names are imported lazily on first use (PEP 562), so
``import indexer.<module>`` stays as light as that module.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "BuildConfig": "indexer.build",
    "EncodeConfig": "indexer.encode",
    "TrainJobConfig": "indexer.training",
    "append": "indexer.update",
    "build": "indexer.build",
    "delete": "indexer.update",
    "encode": "indexer.encode",
    "evaluate": "indexer.evaluate",
    "list_quantizers": "indexer.quantizer",
    "load_arrays": "indexer.imageset",
    "read_info": "indexer.imageset",
    "read_manifest": "indexer.manifest",
    "run_converter": "indexer.converters",
    "train_encoder": "indexer.training",
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
