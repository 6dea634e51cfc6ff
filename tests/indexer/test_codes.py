"""The public code-set writer and the synthetic-codes generators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from indexer.codes import (
    code_arrays,
    list_code_parts,
    read_codes,
    read_encode_info,
    write_code_set,
)
from indexer.synthetic_codes import clustered_codes, uniform_codes
from odh_core.packing import hamming_distances, unpack_bits


def test_write_code_set_round_trips_every_column(tmp_path: Path) -> None:
    ids = np.array([5, 3, 99, 0, 7], dtype=np.int64)
    codes = uniform_codes(5, 24, seed=0)
    root = write_code_set(
        str(tmp_path / "c"), ids, codes, 24, keys=["a", None, "c", "d", "e"],
        labels=[[1], [0, 2], None, [], [3]], splits=["query", "database", "train", None, "train"],
        encode_info={"checkpoint": "/ckpt", "n_bits": 8}, rows_per_part=2,
    )  # fmt: skip
    assert [Path(p).name for p in list_code_parts(root)] == [
        "part-00000.parquet", "part-00001.parquet", "part-00002.parquet",
    ]  # fmt: skip
    assert read_encode_info(root) == {"checkpoint": "/ckpt", "n_bits": 24}  # n_bits wins
    table = read_codes(root)
    got_ids, got_codes = code_arrays(table, 24)
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(got_codes, codes)
    assert table.column("key").to_pylist() == ["a", None, "c", "d", "e"]
    assert table.column("label").to_pylist() == [[1], [0, 2], None, [], [3]]
    assert read_codes(root, splits=["train"]).column("id").to_pylist() == [99, 7]


def test_write_code_set_replaces_stale_parts_and_checks_input(tmp_path: Path) -> None:
    root = str(tmp_path / "c")
    write_code_set(root, np.arange(6), uniform_codes(6, 16, seed=1), 16, rows_per_part=2)
    write_code_set(root, np.arange(3), uniform_codes(3, 16, seed=2), 16)
    assert len(list_code_parts(root)) == 1 and read_codes(root).num_rows == 3
    assert read_codes(root).column_names == ["id", "code"]
    with pytest.raises(ValueError, match="n_bits must be a positive multiple of 8"):
        write_code_set(root, np.arange(3), uniform_codes(3, 16, seed=2), 12)
    with pytest.raises(ValueError, match=r"codes must be uint8\[3, 4\]"):
        write_code_set(root, np.arange(3), uniform_codes(3, 16, seed=2), 32)
    with pytest.raises(ValueError, match="keys has 2 rows, ids has 3"):
        write_code_set(root, np.arange(3), uniform_codes(3, 16, seed=2), 16, keys=["a", "b"])
    with pytest.raises(ValueError, match="ids must be int"):
        write_code_set(root, np.zeros(3), uniform_codes(3, 16, seed=2), 16)
    labels = pa.array([[1], [2], [3]], pa.list_(pa.int64()))
    write_code_set(root, np.arange(3), uniform_codes(3, 16, seed=2), 16, labels=labels)
    assert read_codes(root).schema.field("label").type == pa.list_(pa.int32())


def test_clustered_codes_lie_near_their_centres() -> None:
    n_bits, flip = 64, 0.05
    codes = clustered_codes(3000, n_bits, n_centres=4, flip=flip, seed=0)
    assert codes.shape == (3000, 8) and codes.dtype == np.uint8
    np.testing.assert_array_equal(codes, clustered_codes(3000, n_bits, 4, flip, seed=0))
    # pairs split into same-centre pairs (~2 flip (1 - flip) n_bits = 6.1 bits apart, a quarter
    # of all pairs with 4 centres) and pairs of different centres (~n_bits / 2 apart)
    d = hamming_distances(codes[:300], codes[300:600])
    near = d[d <= n_bits // 4]
    assert 0.15 < near.size / d.size < 0.35
    assert abs(near.mean() - 2 * flip * (1 - flip) * n_bits) < 1.0
    assert abs(d[d > n_bits // 4].mean() - n_bits / 2) < 6
    bits = unpack_bits(codes, n_bits).astype(bool)
    assert abs(bits.mean() - 0.5) < 0.1
    # database and queries from one call share centres: every query has a near neighbour
    both = clustered_codes(1000 + 50, 32, n_centres=10, flip=0.05, seed=3)
    dq = hamming_distances(both[1000:], both[:1000]).min(axis=1)
    assert dq.max() <= 8


def test_uniform_codes_and_checks() -> None:
    codes = uniform_codes(5000, 32, seed=0)
    assert codes.shape == (5000, 4)
    bits = unpack_bits(codes, 32)
    assert abs(bits.mean() - 0.5) < 0.01
    np.testing.assert_array_equal(codes, uniform_codes(5000, 32, seed=0))
    with pytest.raises(ValueError, match="n_bits must be a positive multiple of 8"):
        uniform_codes(3, 10, seed=0)
    with pytest.raises(ValueError, match="flip"):
        clustered_codes(3, 8, n_centres=2, flip=1.5, seed=0)
    with pytest.raises(ValueError, match="n_centres"):
        clustered_codes(3, 8, n_centres=0, flip=0.1, seed=0)
