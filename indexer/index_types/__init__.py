"""Index types as adapters (``ivf``, ``hnsw``, ``flat``) behind one interface.

``create_index_type(name, n_bits, **params)`` makes an empty adapter; ``get_index_type(name)`` is
its class (``.load(uri)``, ``.Params``, ``.search_params``, ``.can_remove``);
``list_index_types()`` names them. See :mod:`indexer.index_types.base` for the interface.
"""

from __future__ import annotations

from indexer.index_types.base import MISSING_DISTANCE, IndexType
from indexer.index_types.registry import (
    create_index_type,
    get_index_type,
    list_index_types,
    make_params,
    register_index_type,
)

__all__ = [
    "MISSING_DISTANCE",
    "IndexType",
    "create_index_type",
    "get_index_type",
    "list_index_types",
    "make_params",
    "register_index_type",
]
