"""``serving.response.search_hits``: merged top-k with key/label from the group that found each hit,
and a JSON body equal to the validated ``SearchResponse``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from serving.response import search_hits
from serving.schemas import SearchResponse
from serving.searcher import GroupHits


def _group(dist: list[list[int]], ids: list[list[int]], arrow: bool = True) -> GroupHits:
    keys = [[None if i < 0 else f"k{i}" for i in row] for row in ids]
    labels = [[None if i < 0 else [i % 3, 7] for i in row] for row in ids]
    if arrow:
        flat_keys = pa.array([v for row in keys for v in row], pa.string())
        flat_labels = pa.array([v for row in labels for v in row], pa.list_(pa.int32()))
        return GroupHits(np.array(dist, np.int32), np.array(ids, np.int64), flat_keys, flat_labels)
    return GroupHits(np.array(dist, np.int32), np.array(ids, np.int64), keys, labels)


@pytest.mark.parametrize("arrow", [True, False])
def test_merge_attaches_key_and_label_of_each_hit(arrow: bool) -> None:
    a = _group([[1, 3, 3], [0, 2, 9]], [[40, 8, 2], [5, 6, -1]], arrow)
    b = _group([[1, 3], [2, 2]], [[12, 1], [4, 30]], arrow)
    hits = search_hits([a, b], 4, max_distance=None, missing=[], n_bits=64, generation=3)
    # (distance, id) order; ties at 3 broken by id
    assert hits.ids.tolist() == [[12, 40, 1, 2], [5, 4, 6, 30]]
    assert hits.distances.tolist() == [[1, 1, 3, 3], [0, 2, 2, 2]]
    want = SearchResponse.model_validate(
        {
            "results": [
                [
                    {"id": i, "distance": d, "key": f"k{i}", "label": [i % 3, 7]}
                    for i, d in zip(row_i, row_d, strict=True)
                ]
                for row_i, row_d in zip(hits.ids.tolist(), hits.distances.tolist(), strict=True)
            ],
            "n_bits": 64,
            "generation": 3,
        }
    )
    assert hits.to_model() == want
    assert SearchResponse.model_validate_json(hits.to_json()) == want
    assert hits.results[1][0].key == "k5" and not hits.partial


def test_radius_padding_and_partial() -> None:
    a = _group([[0, 5, 2**31 - 1]], [[3, 9, -1]])
    hits = search_hits([a], 3, max_distance=4, missing=[1], n_bits=64, generation=1)
    body = SearchResponse.model_validate_json(hits.to_json())
    assert [[h.id for h in row] for row in body.results] == [[3]]
    assert body.partial and body.missing_groups == [1]
    assert body == hits.to_model()


def test_mismatched_keys_are_refused() -> None:
    ids = np.array([[1, 2]])
    bad = GroupHits(np.zeros((1, 2), np.int32), ids, pa.array(["a"]), pa.array([[1]]))
    with pytest.raises(ValueError, match="1 keys/labels for 2 hits"):
        search_hits([bad], 2, max_distance=None, missing=[], n_bits=64, generation=1)
