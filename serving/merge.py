"""Exact top-k merge of per-group Hamming results at the ingress.

``merge_topk`` and ``PAD_DISTANCE`` are ``indexer.search``'s (re-exported here). Every searcher
group returns FAISS-style blocks: ``D int32[nq, k_i]`` and
``I int64[nq, k_i]`` where a missing neighbour is padded with id ``-1``. ``merge_topk``
concatenates the blocks, drops the padding, orders each row by ``(distance, id)`` — ties in Hamming
space are the rule, so the id breaks them deterministically — and keeps the first ``k``. Rows with
fewer than ``k`` real neighbours are padded at the end with id ``-1`` and distance ``PAD_DISTANCE``.

``serving.response.search_hits`` is the ingress side of it (the answer of a request).
"""

from __future__ import annotations

import logging
from typing import Any

from indexer.search import PAD_DISTANCE, merge_topk

logger = logging.getLogger(__name__)

# The merge itself is the indexer's (one implementation for shards and groups alike).
__all__ = ["PAD_DISTANCE", "merge_topk", "stale_answers"]


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
