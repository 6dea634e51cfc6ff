"""Seeded, class-stratified split assignment shared by the converters."""

from __future__ import annotations

import numpy as np


def stratified_splits(
    labels: np.ndarray,
    *,
    query_per_class: int,
    train_per_class: int,
    seed: int,
    query_pool: np.ndarray | None = None,
) -> np.ndarray:
    """Assign ``query`` / ``train`` / ``database`` to every row.

    ``query_per_class`` rows of each class are drawn from ``query_pool`` (a bool mask; all rows
    when None), then ``train_per_class`` rows of each class from the rest; everything else is
    ``database``. Raises ValueError when a class has too few rows.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D class indices, got shape {labels.shape}")
    n = labels.shape[0]
    pool = np.ones(n, dtype=bool) if query_pool is None else np.asarray(query_pool, dtype=bool)
    rng = np.random.default_rng(seed)
    split = np.full(n, "database", dtype=object)
    for cls in np.unique(labels):
        candidates = np.flatnonzero((labels == cls) & pool)
        if candidates.size < query_per_class:
            raise ValueError(
                f"class {int(cls)} has {candidates.size} query candidates, "
                f"need query_per_class={query_per_class}"
            )
        split[rng.choice(candidates, size=query_per_class, replace=False)] = "query"
    for cls in np.unique(labels):
        candidates = np.flatnonzero((labels == cls) & (split == "database"))
        if candidates.size < train_per_class:
            raise ValueError(
                f"class {int(cls)} has {candidates.size} rows left, "
                f"need train_per_class={train_per_class}"
            )
        split[rng.choice(candidates, size=train_per_class, replace=False)] = "train"
    return split
