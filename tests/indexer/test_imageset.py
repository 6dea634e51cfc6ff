"""Image-set format: write/read round trip, validation errors, storage helpers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from indexer import storage
from indexer.converters.png import encode_pngs
from indexer.imageset import (
    IMAGE_SET_SCHEMA,
    DatasetInfo,
    ImageSetError,
    SplitProtocol,
    list_parts,
    load_arrays,
    read_image_set,
    read_info,
    write_image_set,
)


def _table(n: int = 10, seed: int = 0, size: int = 8) -> tuple[pa.Table, np.ndarray]:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    labels = [[i % 3] if i % 4 else [i % 3, (i + 1) % 3] for i in range(n)]
    table = pa.Table.from_pydict(
        {
            "id": pa.array(np.arange(100, 100 + n), pa.int64()),
            "image": pa.array(encode_pngs(pixels), pa.binary()),
            "label": pa.array(labels, pa.list_(pa.int32())),
            "key": [f"k/{i}" for i in range(n)],
            "split": ["query" if i < 2 else ("train" if i < 5 else "database") for i in range(n)],
        },
        schema=IMAGE_SET_SCHEMA,
    )
    return table, pixels


def _info(size: int = 8) -> DatasetInfo:
    return DatasetInfo(
        name="tiny",
        class_names=("a", "b", "c"),
        image_size=(size, size),
        channels=1,
        protocol=SplitProtocol(name="fmnist-1", seed=0),
    )


def test_round_trip(tmp_path: Path) -> None:
    table, pixels = _table(10)
    out = str(tmp_path / "set")
    written = write_image_set(table, out, _info(), rows_per_part=4)
    assert written.counts == {"query": 2, "train": 3, "database": 5}
    parts = list_parts(out)
    assert [p.rsplit("/", 1)[-1] for p in parts] == [f"part-0000{i}.parquet" for i in range(3)]
    sizes = [pq.read_metadata(p).num_rows for p in parts]
    assert sorted(sizes) == [3, 3, 4]  # balanced
    assert read_info(out) == written
    back = read_image_set(out)
    assert back.equals(table)
    sub = read_image_set(out, splits=["query"], columns=["id", "key"])
    assert sub.column_names == ["id", "key"]
    assert sub.column("id").to_pylist() == [100, 101]
    ids, images, labels = load_arrays(out, ["train", "database"])
    assert ids.tolist() == list(range(102, 110))
    assert images.shape == (8, 8, 8, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[..., 0], pixels[2:])
    assert labels.dtype == bool and labels.shape == (8, 3)
    assert labels[2].tolist() == [False, True, True]  # id 104 is multi-label [1, 2]
    assert labels[3].tolist() == [False, False, True]  # id 105 is [2]


def test_rewrite_removes_stale_parts(tmp_path: Path) -> None:
    table, _ = _table(10)
    out = str(tmp_path / "set")
    write_image_set(table, out, _info(), rows_per_part=2)
    write_image_set(table, out, _info(), rows_per_part=10)
    assert len(list_parts(out)) == 1
    assert read_image_set(out).num_rows == 10


def test_memory_filesystem_round_trip() -> None:
    table, _ = _table(6, seed=1)
    out = "memory://odh-test/imageset"
    write_image_set(table, out, _info(), rows_per_part=3)
    assert read_image_set(out).column("id").to_pylist() == list(range(100, 106))
    assert read_info(out).counts["database"] == 1


def _bad_set(tmp_path: Path, table: pa.Table, second: pa.Table | None = None) -> str:
    out = tmp_path / "bad"
    out.mkdir()
    pq.write_table(table, out / "part-00000.parquet")
    if second is not None:
        pq.write_table(second, out / "part-00001.parquet")
    (out / "_dataset.json").write_text(json.dumps(_info().to_json()))
    return str(out)


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    table, _ = _table(4)
    path = _bad_set(tmp_path, table.drop_columns(["image"]))
    with pytest.raises(
        ImageSetError, match=r"part-00000\.parquet: missing required column 'image'"
    ):
        read_image_set(path)


def test_mistyped_column(tmp_path: Path) -> None:
    table, _ = _table(4)
    bad = table.set_column(0, "id", pa.array(["a", "b", "c", "d"]))
    path = _bad_set(tmp_path, bad)
    with pytest.raises(ImageSetError, match=r"part-00000\.parquet: column 'id' has type string"):
        read_image_set(path)
    bad_label = table.set_column(2, "label", pa.array(["x"] * 4))
    with pytest.raises(ImageSetError, match="column 'label' has type string"):
        write_image_set(bad_label, str(tmp_path / "out"), _info())


def test_duplicate_ids_across_parts(tmp_path: Path) -> None:
    table, _ = _table(4)
    path = _bad_set(tmp_path, table, table.slice(2, 1))
    with pytest.raises(
        ImageSetError,
        match=r"part-00000\.parquet and .*part-00001\.parquet: "
        r"column 'id' has duplicate id 102",
    ):
        read_image_set(path)


def test_negative_ids(tmp_path: Path) -> None:
    table, _ = _table(4)
    bad = table.set_column(0, "id", pa.array([0, 1, -5, 3], pa.int64()))
    path = _bad_set(tmp_path, bad)
    with pytest.raises(ImageSetError, match=r"part-00000\.parquet: column 'id' has negative"):
        read_image_set(path)


def test_empty_image_bytes(tmp_path: Path) -> None:
    table, _ = _table(4)
    images = table.column("image").to_pylist()
    images[1] = b""
    bad = table.set_column(1, "image", pa.array(images, pa.binary()))
    path = _bad_set(tmp_path, bad)
    with pytest.raises(ImageSetError, match=r"part-00000\.parquet: column 'image' has 1 null"):
        read_image_set(path)
    with pytest.raises(ImageSetError, match="column 'image'"):
        write_image_set(bad, str(tmp_path / "out"), _info())


def test_oversized_image_is_refused_at_the_shared_limit(tmp_path: Path) -> None:
    from odh_core.images import DEFAULT_IMAGE_LIMITS

    table, _ = _table(3)
    images = table.column("image").to_pylist()
    images[2] = b"\x89PNG" + bytes(DEFAULT_IMAGE_LIMITS.max_bytes - 3)  # one byte over
    bad = table.set_column(1, "image", pa.array(images, pa.binary()))
    bad_id = table.column("id")[2].as_py()
    with pytest.raises(ImageSetError, match=rf"column 'image' of id {bad_id} .*over the image"):
        write_image_set(bad, str(tmp_path / "out"), _info())
    path = _bad_set(tmp_path, bad)
    with pytest.raises(ImageSetError, match=r"part-00000\.parquet: column 'image' of id"):
        read_image_set(path)


def test_unknown_split_and_bad_info(tmp_path: Path) -> None:
    table, _ = _table(4)
    bad = table.set_column(4, "split", pa.array(["query", "test", "train", "train"]))
    path = _bad_set(tmp_path, bad)
    with pytest.raises(ImageSetError, match="column 'split' has unknown values"):
        read_image_set(path)
    info = _info().to_json()
    info["format_version"] = 7
    Path(path, "_dataset.json").write_text(json.dumps(info))
    with pytest.raises(ImageSetError, match="format_version 7"):
        read_info(path)


def test_storage_helpers(tmp_path: Path) -> None:
    uri = str(tmp_path / "a" / "b.json")
    storage.write_json_atomic(uri, {"x": [1, 2]})
    assert storage.read_json(uri) == {"x": [1, 2]}
    assert list((tmp_path / "a").iterdir()) == [tmp_path / "a" / "b.json"]  # no temp files left
    data = Path(uri).read_bytes()
    assert storage.sha256_of(uri) == storage.sha256_bytes(data)
    assert storage.join("s3://bucket/x/", "y", "/z") == "s3://bucket/x/y/z"
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        storage.read_json(str(tmp_path / "missing.json"))
