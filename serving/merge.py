"""Exact top-k merge of per-group Hamming results at the ingress.

``merge_topk`` and ``PAD_DISTANCE`` are ``indexer.search``'s (re-exported here). Every searcher
group returns FAISS-style blocks: ``D int32[nq, k_i]`` and
``I int64[nq, k_i]`` where a missing neighbour is padded with id ``-1``. ``merge_topk``
concatenates the blocks, drops the padding, orders each row by ``(distance, id)`` — ties in Hamming
space are the rule, so the id breaks them deterministically — and keeps the first ``k``. Rows with
fewer than ``k`` real neighbours are padded at the end with id ``-1`` and distance ``PAD_DISTANCE``.

``search_response`` is the ingress side of it: the merged top-k of the group answers that came
back, the radius filter, and the ``key``/``label`` of every hit from the group that found it, as
one validated ``SearchResponse``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from indexer.search import PAD_DISTANCE, merge_topk
from serving.schemas import SearchResponse

logger = logging.getLogger(__name__)

# The merge itself is the indexer's (one implementation for shards and groups alike).
__all__ = ["PAD_DISTANCE", "merge_topk", "search_response", "stale_answers"]


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


def _flat(values: Any) -> list[Any]:
    """Row-major Python list of a flat Arrow array or of nested ``[nq][k]`` lists."""
    if hasattr(values, "to_pylist"):
        return values.to_pylist()
    return [v for row in values for v in row]


def search_response(
    answers: Sequence[Any],
    k: int,
    *,
    max_distance: int | None,
    missing: Sequence[int],
    n_bits: int,
    generation: int,
) -> SearchResponse:
    """Merge the ``GroupHits`` of the groups that answered into the API answer.

    Args:
        answers: one ``serving.searcher.GroupHits`` per answering group (any order).
        k: hits per query; max_distance: keep only hits at Hamming distance ``<=`` this.
        missing: groups that did not answer (→ ``partial``); n_bits, generation: of the index.
    """
    dist, ids = merge_topk([a.distances for a in answers], [a.ids for a in answers], k)
    if max_distance is not None:
        ids = np.where(dist <= max_distance, ids, -1)
    # key/label of each hit come from the group that found it.
    attach: dict[int, tuple[str | None, list[int] | None]] = {}
    for a in answers:
        flat_ids = np.asarray(a.ids).reshape(-1).tolist()
        for hid, key, label in zip(flat_ids, _flat(a.keys), _flat(a.labels), strict=True):
            if hid >= 0:
                attach[hid] = (key, label)
    results = [
        [
            {"id": i, "distance": d, "key": attach[i][0], "label": attach[i][1]}
            for d, i in zip(row_d, row_i, strict=True)
            if i >= 0
        ]
        for row_d, row_i in zip(dist.tolist(), ids.tolist(), strict=True)
    ]
    return SearchResponse.model_validate(
        {
            "results": results,
            "partial": bool(missing),
            "missing_groups": list(missing),
            "n_bits": n_bits,
            "generation": generation,
        }
    )
