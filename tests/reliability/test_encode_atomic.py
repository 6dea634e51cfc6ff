"""Atomic, reject-first encode: poisoned rows become reject rows, a failed job keeps the previous
output (issue 14: a label overflowing int32 killed the job after the old codes were deleted)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from indexer.codes import read_codes, read_rejects
from indexer.converters.synthetic import make_synthetic
from indexer.encode import EncodeConfig, encode
from indexer.imageset import row_problems

POISON_LABEL_ID = 3
NEGATIVE_ID = -7
BAD_SPLIT_ID = 9


def _poison(image_set: Path) -> None:
    """Row 3 gets a label of 2**40 (passes the list<int> schema, overflows int32), row 9 an
    unknown split, and one row a negative id."""
    part = image_set / "part-00000.parquet"
    table = pq.read_table(part)
    ids = table.column("id").to_pylist()
    labels = [list(v) if v is not None else None for v in table.column("label").to_pylist()]
    labels[ids.index(POISON_LABEL_ID)] = [1, 2**40]
    splits = table.column("split").to_pylist()
    splits[ids.index(BAD_SPLIT_ID)] = "holdout"
    ids[ids.index(11)] = NEGATIVE_ID
    table = pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "image": table.column("image"),
            "key": table.column("key"),
            "label": pa.array(labels, pa.list_(pa.int64())),
            "split": pa.array(splits, pa.string()),
        }
    )
    pq.write_table(table, part)


def test_row_problems_checks_value_ranges() -> None:
    table = pa.table(
        {
            "id": pa.array([0, -1, 2, 3], pa.int64()),
            "label": pa.array([[0], [1], [2**40], [3]], pa.list_(pa.int64())),
            "split": pa.array(["train", "train", "query", "nope"]),
        }
    )
    problems = row_problems(table, n_classes=4)
    assert problems[0] is None
    assert "id -1 is out of range" in problems[1]
    assert "label value(s) [1099511627776] out of range" in problems[2]
    assert "split 'nope'" in problems[3]
    five = pa.table({"id": [1], "label": pa.array([[5]], pa.list_(pa.int32()))})
    assert "[5]" in row_problems(five, n_classes=4)[0]  # 5 >= n_classes 4
    assert row_problems(five)[0] is None  # within int32, no class count known


def test_poisoned_rows_become_rejects_and_the_job_finishes(
    ray_local: None, tiny_checkpoint: str, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    make_synthetic(str(images), n_classes=4, per_class=12, image_size=28, seed=0)
    _poison(images)
    out = str(tmp_path / "codes")
    summary = encode(EncodeConfig(str(images), tiny_checkpoint, out, batch_size=8, num_cpus=0.5))
    assert (summary.read, summary.encoded, summary.rejected) == (48, 45, 3)
    assert summary.rejected_by_stage == {"validate": 3}
    rejects = {r["id"]: r for r in read_rejects(out).to_pylist()}
    assert set(rejects) == {POISON_LABEL_ID, BAD_SPLIT_ID, NEGATIVE_ID}
    assert all(r["stage"] == "validate" for r in rejects.values())
    assert "out of range" in rejects[POISON_LABEL_ID]["error"]
    assert "holdout" in rejects[BAD_SPLIT_ID]["error"]
    assert "id -7" in rejects[NEGATIVE_ID]["error"]
    codes = read_codes(out)
    assert sorted(codes.column("id").to_pylist()) == sorted(
        set(range(48)) - {POISON_LABEL_ID, BAD_SPLIT_ID, 11}
    )
    assert codes.schema.field("label").type == pa.list_(pa.int32())


def test_a_failed_job_keeps_the_previous_output(
    ray_local: None, tiny_checkpoint: str, tmp_path: Path
) -> None:
    good = tmp_path / "good"
    make_synthetic(str(good), n_classes=4, per_class=6, image_size=28, seed=1)
    out = tmp_path / "codes"
    encode(EncodeConfig(str(good), tiny_checkpoint, str(out), batch_size=8, num_cpus=0.5))
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert any(str(p).startswith("codes/") for p in before)

    # a set whose second part's data pages are garbage: the schema (footer) reads, the rows
    # do not — the job fails inside the Ray Data pipeline, after it started writing
    bad = tmp_path / "bad"
    make_synthetic(str(bad), n_classes=4, per_class=6, image_size=28, seed=2, rows_per_part=12)
    part = bad / "part-00001.parquet"
    data = bytearray(part.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    for i in range(4, len(data) - footer):
        data[i] = 0xA5
    part.write_bytes(bytes(data))
    with pytest.raises(Exception):  # noqa: B017 - Ray wraps the reader's error
        encode(EncodeConfig(str(bad), tiny_checkpoint, str(out), batch_size=8, num_cpus=0.5))
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # the previous output is intact, byte for byte
    assert not list(tmp_path.glob("codes.staging-*"))  # and the staging directory is gone
