"""The ``POST /v1/search`` answer, built from the group answers without a Python object per hit
until it is serialised.

``search_hits`` merges the ``GroupHits`` of the groups that answered (``merge_topk``), applies the
radius filter and takes the ``key`` / ``label`` of every kept hit from the group that found it, all
as arrays. ``SearchHits.to_json`` writes the response body in one pass (pydantic-core's serialiser
over plain lists and dicts, shaped exactly as ``SearchResponse``); ``to_arrow`` writes the
columnar answer (``serving.wire``) straight from the arrays; ``to_model`` gives the validated
``SearchResponse`` for in-process callers. Measured side by side on the 2-core dev machine for 256
queries × k 10: 2.3 ms against 4.8 ms for building and validating a model per hit and dumping it
(best of 60 each, the same JSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa

from indexer.search import merge_topk
from serving.schemas import Hit, SearchResponse
from serving.wire import encode_hits


def _flat_values(values: Any, n: int) -> pa.Array:
    """A flat Arrow array of ``n`` values from a flat Arrow array or nested ``[nq][k]`` lists."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array([v for row in values for v in row])
    if len(values) != n:
        raise ValueError(f"a group answer has {len(values)} keys/labels for {n} hits")
    return values


@dataclass(frozen=True, eq=False)
class SearchHits:
    """Merged top-k of one request: ``ids int64[nq, k]`` (``-1`` = no hit, always at the end of
    a row), ``distances int32[nq, k]`` and the row-major ``key`` / ``label`` of every hit as flat
    Arrow arrays (one entry per slot, null where there is no hit)."""

    ids: np.ndarray
    distances: np.ndarray
    keys: pa.Array
    labels: pa.Array
    n_bits: int
    generation: int
    missing_groups: list[int] = field(default_factory=list)

    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SearchHits):
            return NotImplemented
        return (
            np.array_equal(self.ids, other.ids)
            and np.array_equal(self.distances, other.distances)
            and self.keys.equals(other.keys)
            and self.labels.equals(other.labels)
            and (self.n_bits, self.generation, self.missing_groups)
            == (other.n_bits, other.generation, other.missing_groups)
        )

    @property
    def partial(self) -> bool:
        return bool(self.missing_groups)

    def _body(self) -> dict[str, Any]:
        k = self.ids.shape[1]
        ids, dist = self.ids.tolist(), self.distances.tolist()
        keys, labels = self.keys.to_pylist(), self.labels.to_pylist()
        results = []
        for r, (row_i, row_d) in enumerate(zip(ids, dist, strict=True)):
            base = r * k
            results.append(
                [
                    {
                        "id": i,
                        "distance": d,
                        "key": keys[base + c],
                        "label": labels[base + c],
                    }
                    for c, (i, d) in enumerate(zip(row_i, row_d, strict=True))
                    if i >= 0
                ]
            )
        return {
            "results": results,
            "partial": self.partial,
            "missing_groups": list(self.missing_groups),
            "n_bits": int(self.n_bits),
            "generation": int(self.generation),
        }

    def to_json(self) -> bytes:
        """The response body: the JSON ``SearchResponse`` schema describes (not re-validated)."""
        import pydantic_core

        return pydantic_core.to_json(self._body())

    def to_arrow(self) -> bytes:
        """The columnar response body (``serving.wire``: an Arrow IPC stream, no Python object
        per hit)."""
        meta = {
            "partial": self.partial,
            "missing_groups": [int(g) for g in self.missing_groups],
            "n_bits": int(self.n_bits),
            "generation": int(self.generation),
        }
        return encode_hits(self.ids, self.distances, self.keys, self.labels, meta)

    def to_model(self) -> SearchResponse:
        """The validated ``SearchResponse``."""
        return SearchResponse.model_validate(self._body())

    @cached_property
    def results(self) -> list[list[Hit]]:
        """Hits per query, best first (``SearchResponse.results``)."""
        return self.to_model().results


def search_hits(
    answers: Sequence[Any],
    k: int,
    *,
    max_distance: int | None,
    missing: Sequence[int],
    n_bits: int,
    generation: int,
) -> SearchHits:
    """Merge the ``GroupHits`` of the groups that answered into the answer of the request.

    Args:
        answers: one ``serving.searcher.GroupHits`` per answering group (any order); ids are
            disjoint across groups, so an id names one ``key``/``label``.
        k: hits per query; max_distance: keep only hits at Hamming distance ``<=`` this.
        missing: groups that did not answer (→ ``partial``); n_bits, generation: of the index.
    """
    if not answers:
        raise ValueError("answers: need at least one group answer")
    dist, ids = merge_topk([a.distances for a in answers], [a.ids for a in answers], k)
    if max_distance is not None:
        cut = dist > max_distance  # rows are sorted by distance: the cut keeps hits first
        ids = np.where(cut, -1, ids)
        dist = np.where(cut, np.iinfo(np.int32).max, dist).astype(np.int32)
    src_ids = np.concatenate([np.asarray(a.ids, dtype=np.int64).reshape(-1) for a in answers])
    keys = pa.concat_arrays(
        [_flat_values(a.keys, np.asarray(a.ids).size).cast(pa.string()) for a in answers]
    )
    label_type = pa.list_(pa.int32())
    labels = pa.concat_arrays(
        [_flat_values(a.labels, np.asarray(a.ids).size).cast(label_type) for a in answers]
    )
    flat = ids.reshape(-1)
    valid = flat >= 0
    order = np.argsort(src_ids, kind="stable")
    pos = order[np.searchsorted(src_ids[order], flat[valid])]
    take = np.full(flat.shape, -1, dtype=np.int64)
    take[valid] = pos
    take_pa = pa.array(take, mask=~valid)
    return SearchHits(
        ids=ids,
        distances=dist,
        keys=keys.take(take_pa),
        labels=labels.take(take_pa),
        n_bits=n_bits,
        generation=generation,
        missing_groups=list(missing),
    )
