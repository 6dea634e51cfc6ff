"""Exact top-k merge of per-shard / per-group Hamming results.

Every searcher (and the ingress, across groups) returns FAISS-style blocks: ``D int32[nq, k_i]`` and
``I int64[nq, k_i]`` where a missing neighbour is padded with id ``-1``. ``merge_topk``
concatenates the blocks, drops the padding, orders each row by ``(distance, id)`` — ties in Hamming
space are the rule, so the id breaks them deterministically — and keeps the first ``k``. Rows with
fewer than ``k`` real neighbours are padded at the end with id ``-1`` and distance ``PAD_DISTANCE``.

``serving.response.search_hits`` is the ingress side of it (the answer of a request).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: Distance written next to a padding id ``-1`` (what FAISS binary indexes use as well).
PAD_DISTANCE: int = int(np.iinfo(np.int32).max)

_ID_SENTINEL = np.iinfo(np.int64).max


def merge_topk(
    distances: Sequence[np.ndarray], ids: Sequence[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge result blocks into the global top-``k`` per query row.

    Args:
        distances: one ``int[nq, k_i]`` block per source (same ``nq``, any ``k_i``).
        ids: the matching ``int64[nq, k_i]`` blocks; ``-1`` marks padding and is dropped.
        k: number of neighbours to keep (≥ 1).

    Returns:
        ``(D int32[nq, k], I int64[nq, k])`` ordered by ``(distance, id)``; rows with fewer
        than ``k`` real neighbours end with ``-1`` ids and ``PAD_DISTANCE``.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    k = int(k)
    if len(distances) != len(ids):
        raise ValueError(
            f"distances and ids must have the same number of blocks, got {len(distances)} "
            f"and {len(ids)}"
        )
    if len(distances) == 0:
        raise ValueError("distances: need at least one result block")
    d_blocks = [np.asarray(d) for d in distances]
    i_blocks = [np.asarray(i) for i in ids]
    nq = d_blocks[0].shape[0] if d_blocks[0].ndim == 2 else -1
    for b, (d, i) in enumerate(zip(d_blocks, i_blocks, strict=True)):
        if d.ndim != 2 or i.ndim != 2 or d.shape != i.shape or d.shape[0] != nq:
            raise ValueError(
                f"block {b}: distances {d.shape} and ids {i.shape} must both be [nq={nq}, k_i]"
            )
    dist = np.concatenate([d.astype(np.int64, copy=False) for d in d_blocks], axis=1)
    idx = np.concatenate([i.astype(np.int64, copy=False) for i in i_blocks], axis=1)

    valid = idx >= 0
    sort_dist = np.where(valid, dist, _ID_SENTINEL)
    sort_ids = np.where(valid, idx, _ID_SENTINEL)
    # lexsort: last key is primary → (distance, id) per row.
    order = np.lexsort((sort_ids, sort_dist), axis=-1)[:, :k]
    top_ids = np.take_along_axis(idx, order, axis=1)
    top_dist = np.take_along_axis(dist, order, axis=1)
    top_valid = np.take_along_axis(valid, order, axis=1)

    out_d = np.full((nq, k), PAD_DISTANCE, dtype=np.int32)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    width = order.shape[1]
    out_d[:, :width] = np.where(top_valid, top_dist, PAD_DISTANCE)
    out_i[:, :width] = np.where(top_valid, top_ids, -1)
    return out_d, out_i


def stale_answers(answers: dict[int, Any], generation: int, digest: str | None) -> dict[int, str]:
    """Groups whose answer came from another manifest than the one served, with why.

    An answer names its manifest by ``generation`` and ``digest`` (``GroupHits``); one that
    names none (an older searcher) is taken as it is. Merging answers of two manifests would mix
    two indexes under one generation number, so the caller drops these groups instead.
    """
    out: dict[int, str] = {}
    for g, a in answers.items():
        got_gen = getattr(a, "generation", None)
        got_digest = getattr(a, "digest", None)
        if got_gen is not None and int(got_gen) != int(generation):
            out[g] = f"group {g} answered from generation {got_gen}, not {generation}"
        elif digest is not None and got_digest is not None and got_digest != digest:
            out[g] = (
                f"group {g} answered from a different manifest of generation {generation} "
                f"(digest {str(got_digest)[:12]}…, serving {digest[:12]}…)"
            )
    return out
