"""Labels → multi-hot: the one label conversion of every stage (numpy only, no torch).

``odh_core.data`` re-exports it for training; ``indexer.imageset.label_column_to_multihot`` turns
the image set's Arrow ``label`` column into per-row lists and calls it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)


def labels_to_multihot(
    labels: np.ndarray | Sequence[Sequence[int] | np.ndarray | None], n_classes: int | None = None
) -> np.ndarray:
    """Labels → multi-hot ``bool[n, n_classes]``: the one conversion of every stage.

    ``labels`` is one of: class ids ``int[n]`` (single-label); a multi-hot ``[n, C]`` array; or
    a sequence of per-row label lists (multi-label; ``None`` or an empty list: no label, an
    all-False row), as the image set's ``label`` list<int32> column holds them.
    ``n_classes`` defaults to the largest label + 1. A label outside ``[0, n_classes)`` or a
    multi-hot width other than ``n_classes`` raises ValueError naming ``label``.
    """
    if n_classes is not None and n_classes < 0:
        raise ValueError(f"n_classes must be >= 0, got {n_classes}")
    if isinstance(labels, np.ndarray) and labels.dtype != object:
        arr = labels
        if arr.ndim == 2:
            if n_classes is not None and arr.shape[1] != n_classes:
                raise ValueError(
                    f"label: multi-hot labels have {arr.shape[1]} columns, expected {n_classes}"
                )
            return arr.astype(bool)
        if arr.ndim != 1:
            raise ValueError(f"label: expected int[n] or multi-hot [n, C], got shape {arr.shape}")
        lengths = np.ones(arr.shape[0], dtype=np.int64)
        flat = arr
    else:
        rows_list = list(labels)
        lengths = np.array([0 if r is None else len(r) for r in rows_list], dtype=np.int64)
        parts = [np.asarray(r).reshape(-1) for r in rows_list if r is not None and len(r)]
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if flat.dtype.kind not in "iub" and not (
        flat.dtype.kind == "f" and np.all(np.mod(flat, 1) == 0)
    ):
        raise ValueError(f"label: labels must be integers, got dtype {flat.dtype}")
    flat = flat.astype(np.int64)
    c = (int(flat.max()) + 1 if flat.size else 0) if n_classes is None else n_classes
    if flat.size and (flat.min() < 0 or flat.max() >= c):
        raise ValueError(f"label: values outside [0, {c}) (min {flat.min()}, max {flat.max()})")
    out = np.zeros((len(lengths), c), dtype=bool)
    out[np.repeat(np.arange(len(lengths)), lengths), flat] = True
    return out
