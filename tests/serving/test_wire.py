"""``serving.wire``: the Arrow answer of ``POST /v1/search`` carries exactly the JSON answer's hits,
and the client reads either into the same ``SearchResult``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from serving.client import SearchResult, _arrow_hits, _json_hits
from serving.response import SearchHits, search_hits
from serving.searcher import GroupHits
from serving.wire import ARROW_STREAM, NO_HIT_DISTANCE, decode_hits, encode_hits, wants_arrow


def _hits(max_distance: int | None = None, missing: list[int] | None = None) -> SearchHits:
    ids = [[4, 9, 2], [7, -1, -1]]
    dist = [[0, 3, 5], [1, 2**31 - 1, 2**31 - 1]]
    keys = pa.array([None if i < 0 else f"k{i}" for row in ids for i in row], pa.string())
    labels = pa.array(
        [None if i < 0 else [i % 3] for row in ids for i in row], pa.list_(pa.int32())
    )
    group = GroupHits(np.array(dist, np.int32), np.array(ids, np.int64), keys, labels)
    return search_hits(
        [group], 3, max_distance=max_distance, missing=missing or [], n_bits=64, generation=7
    )


@pytest.mark.parametrize("max_distance", [None, 3])
def test_arrow_answer_equals_json_answer(max_distance: int | None) -> None:
    hits = _hits(max_distance, missing=[1])
    wire = decode_hits(hits.to_arrow())
    assert wire.ids.tolist() == hits.ids.tolist()
    assert wire.distances.dtype == np.int32 and wire.ids.dtype == np.int64
    assert wire.meta == {
        "partial": True, "missing_groups": [1], "n_bits": 64, "generation": 7, "k": 3
    }  # fmt: skip
    from_arrow = SearchResult(**_arrow_hits(hits.to_arrow()))
    from_json = SearchResult(**_json_hits(hits.to_model().model_dump()))
    want = [[(h.id, h.distance, h.key, h.label) for h in row] for row in hits.to_model().results]
    for result in (from_arrow, from_json):
        got = [[(h.id, h.distance, h.key, h.label) for h in row] for row in result]
        assert got == want
        assert result.partial and result.missing_groups == [1] and result.generation == 7
        assert result.ids() == [[h[0] for h in row] for row in want]
        assert result.distances() == [[h[1] for h in row] for row in want]
    if max_distance == 3:  # the radius cut leaves no-hit slots, padded as the merge pads
        assert from_arrow.id_array[0].tolist() == [4, 9, -1]
        assert from_arrow.distance_array[0, 2] == NO_HIT_DISTANCE
        assert from_arrow.keys[2].as_py() is None


def test_empty_answer_round_trips() -> None:
    body = encode_hits(
        np.zeros((0, 5), np.int64), np.zeros((0, 5), np.int32),
        pa.array([], pa.string()), pa.array([], pa.list_(pa.int32())), {"n_bits": 64},
    )  # fmt: skip
    result = SearchResult(**_arrow_hits(body))
    assert len(result) == 0 and result.id_array.shape == (0, 5) and result.results == []


def test_bad_streams_and_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="not an Arrow IPC stream"):
        decode_hits(b"{'results': []}")
    table = pa.table({"x": [1]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    with pytest.raises(ValueError, match=r"columns \['x'\]"):
        decode_hits(sink.getvalue().to_pybytes())
    with pytest.raises(ValueError, match="must be one"):
        encode_hits(
            np.zeros((2, 3), np.int64), np.zeros((3, 2), np.int32),
            pa.array([None] * 6, pa.string()), pa.array([None] * 6, pa.list_(pa.int32())), {},
        )  # fmt: skip
    with pytest.raises(ValueError, match="nq·k = 6"):
        encode_hits(
            np.zeros((2, 3), np.int64), np.zeros((2, 3), np.int32),
            pa.array([None] * 5, pa.string()), pa.array([None] * 6, pa.list_(pa.int32())), {},
        )  # fmt: skip


@pytest.mark.parametrize(
    ("accept", "want"),
    [
        (None, False),
        ("application/json", False),
        (ARROW_STREAM, True),
        (f"application/json;q=0.5, {ARROW_STREAM}", True),
        (f"{ARROW_STREAM.upper()}; q=1", True),
        ("application/vnd.apache.arrow.file", False),
    ],
)
def test_accept_header_negotiation(accept: str | None, want: bool) -> None:
    assert wants_arrow(accept) is want


def test_result_to_dict_is_json_ready() -> None:
    import json

    result = SearchResult(**_arrow_hits(_hits(3).to_arrow()), hops=0)
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["results"][0] == [
        {"id": 4, "distance": 0, "key": "k4", "label": [1]},
        {"id": 9, "distance": 3, "key": "k9", "label": [0]},
    ]
    assert doc["hops"] == 0 and doc["n_bits"] == 64
