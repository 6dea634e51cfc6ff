"""merge_topk against a brute-force sort, with ties and FAISS -1 padding."""

from __future__ import annotations

import numpy as np
import pytest

from serving.merge import PAD_DISTANCE, merge_topk


def _brute(distances: list[np.ndarray], ids: list[np.ndarray], k: int):
    nq = distances[0].shape[0]
    out_d = np.full((nq, k), PAD_DISTANCE, dtype=np.int32)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    for q in range(nq):
        pairs = sorted(
            (int(d[q, j]), int(i[q, j]))
            for d, i in zip(distances, ids, strict=True)
            for j in range(d.shape[1])
            if i[q, j] >= 0
        )[:k]
        for j, (dd, ii) in enumerate(pairs):
            out_d[q, j], out_i[q, j] = dd, ii
    return out_d, out_i


def _blocks(rng: np.random.Generator, nq: int, widths: list[int], n_ids: int, max_d: int):
    """Disjoint id sets per block, few distinct distances (many ties), some -1 padding."""
    perm = rng.permutation(n_ids)
    distances, ids, start = [], [], 0
    for w in widths:
        d = rng.integers(0, max_d, size=(nq, w)).astype(np.int32)
        i = np.stack([rng.permutation(perm[start : start + 50])[:w] for _ in range(nq)]).astype(
            np.int64
        )
        start += 50
        pad = rng.random((nq, w)) < 0.2
        d[pad] = PAD_DISTANCE
        i[pad] = -1
        distances.append(d)
        ids.append(i)
    return distances, ids


@pytest.mark.parametrize("k", [1, 5, 12, 40])
def test_merge_matches_brute_force(k: int) -> None:
    rng = np.random.default_rng(k)
    distances, ids = _blocks(rng, nq=7, widths=[10, 3, 12], n_ids=1000, max_d=4)
    got_d, got_i = merge_topk(distances, ids, k)
    want_d, want_i = _brute(distances, ids, k)
    assert got_d.dtype == np.int32 and got_i.dtype == np.int64
    assert got_d.shape == (7, k) and got_i.shape == (7, k)
    np.testing.assert_array_equal(got_d, want_d)
    np.testing.assert_array_equal(got_i, want_i)


def test_ties_broken_by_id_and_padding_at_end() -> None:
    d = [np.array([[3, 1, PAD_DISTANCE]], np.int32), np.array([[1, 1]], np.int32)]
    i = [np.array([[9, 7, -1]], np.int64), np.array([[5, 8]], np.int64)]
    got_d, got_i = merge_topk(d, i, 6)
    assert got_i.tolist() == [[5, 7, 8, 9, -1, -1]]
    assert got_d.tolist() == [[1, 1, 1, 3, PAD_DISTANCE, PAD_DISTANCE]]


def test_all_padding_row() -> None:
    d = [np.full((2, 3), PAD_DISTANCE, np.int32)]
    i = [np.array([[-1, -1, -1], [4, -1, -1]], np.int64)]
    got_d, got_i = merge_topk(d, i, 2)
    assert got_i.tolist() == [[-1, -1], [4, -1]]
    assert got_d[0].tolist() == [PAD_DISTANCE, PAD_DISTANCE]


def test_bad_arguments_are_named() -> None:
    d = [np.zeros((2, 3), np.int32)]
    i = [np.zeros((2, 3), np.int64)]
    with pytest.raises(ValueError, match="k must be"):
        merge_topk(d, i, 0)
    with pytest.raises(ValueError, match="block 1"):
        merge_topk([*d, np.zeros((3, 3), np.int32)], [*i, np.zeros((3, 3), np.int64)], 2)
    with pytest.raises(ValueError, match="same number of blocks"):
        merge_topk(d, [], 2)
