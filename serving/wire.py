"""The columnar answer of ``POST /v1/search``: an Arrow IPC stream, for clients that send
``Accept: application/vnd.apache.arrow.stream`` (JSON stays the default).

One record batch, one row per query, each column a fixed-size list of ``k`` slots in rank order:

=============  ===================================  ==========================================
column         type                                 a slot with no hit (always at a row's end)
=============  ===================================  ==========================================
``ids``        ``fixed_size_list<int64>[k]``        ``-1``
``distances``  ``fixed_size_list<int32>[k]``        ``2**31 - 1``
``keys``       ``fixed_size_list<string>[k]``       null
``labels``     ``fixed_size_list<list<int32>>[k]``  null
=============  ===================================  ==========================================

The schema metadata key ``odh`` holds the JSON ``{"partial", "missing_groups", "n_bits",
"generation", "k"}``. The ids and distances reach the client as numpy views of the received
buffers: no Python object per hit on either side (the JSON answer builds and parses one dict per
hit, most of a large batch's time over HTTP).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

ARROW_STREAM = "application/vnd.apache.arrow.stream"

#: The distance of a slot with no hit (the int32 maximum, as the merge pads).
NO_HIT_DISTANCE = np.iinfo(np.int32).max


def wants_arrow(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for the Arrow answer (media type match, any params)."""
    if not accept:
        return False
    return any(part.split(";")[0].strip().lower() == ARROW_STREAM for part in accept.split(","))


@dataclass(frozen=True)
class WireHits:
    """A decoded Arrow answer: ``ids int64[nq, k]``, ``distances int32[nq, k]`` (read-only views
    of the body), flat row-major ``keys`` / ``labels`` Arrow arrays and the answer's metadata."""

    ids: np.ndarray
    distances: np.ndarray
    keys: pa.Array
    labels: pa.Array
    meta: dict[str, Any] = field(default_factory=dict)


def _fixed(values: pa.Array, k: int) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(values, k)


def encode_hits(
    ids: np.ndarray, distances: np.ndarray, keys: pa.Array, labels: pa.Array, meta: dict[str, Any]
) -> bytes:
    """The Arrow IPC stream of one answer (``ids``/``distances`` ``[nq, k]``, flat ``keys`` /
    ``labels`` of ``nq·k`` entries, ``meta`` as the schema's ``odh`` metadata)."""
    if ids.ndim != 2 or ids.shape != distances.shape:
        raise ValueError(f"ids {ids.shape} and distances {distances.shape} must be one [nq, k]")
    nq, k = ids.shape
    if len(keys) != nq * k or len(labels) != nq * k:
        raise ValueError(f"keys/labels must hold nq·k = {nq * k} entries")
    batch = pa.RecordBatch.from_arrays(
        [
            _fixed(pa.array(np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)), k),
            _fixed(pa.array(np.ascontiguousarray(distances, dtype=np.int32).reshape(-1)), k),
            _fixed(keys.cast(pa.string()), k),
            _fixed(labels.cast(pa.list_(pa.int32())), k),
        ],
        names=["ids", "distances", "keys", "labels"],
    )
    schema = batch.schema.with_metadata({"odh": json.dumps({**meta, "k": k})})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(batch.replace_schema_metadata(schema.metadata))
    return sink.getvalue().to_pybytes()


def decode_hits(body: bytes) -> WireHits:
    """Read :func:`encode_hits`' stream; raises ValueError naming what is wrong with it."""
    try:
        reader = pa.ipc.open_stream(body)
        table = reader.read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"not an Arrow IPC stream of search hits: {exc}") from exc
    need = ["ids", "distances", "keys", "labels"]
    if table.column_names != need:
        raise ValueError(f"the Arrow answer has columns {table.column_names}, expected {need}")
    raw = (table.schema.metadata or {}).get(b"odh")
    if raw is None:
        raise ValueError("the Arrow answer has no 'odh' schema metadata")
    meta = json.loads(raw)
    k, nq = int(meta["k"]), table.num_rows

    def flat(name: str) -> pa.Array:
        return table.column(name).combine_chunks().flatten()

    return WireHits(
        ids=flat("ids").to_numpy(zero_copy_only=True).reshape(nq, k),
        distances=flat("distances").to_numpy(zero_copy_only=True).reshape(nq, k),
        keys=flat("keys"),
        labels=flat("labels"),
        meta=meta,
    )
