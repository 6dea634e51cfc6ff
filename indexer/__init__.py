"""Indexer: image sets, the encode job, sharded FAISS index builds and updates.

Public API (timm-style explicit re-exports). Names are imported lazily on first use (PEP 562), so
``import indexer.<module>`` stays as light as that module.
"""

from __future__ import annotations

from odh_core.lazy import lazy_exports

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

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
