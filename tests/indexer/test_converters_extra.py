"""CIFAR-10 batches (small fakes), image folders and Parquet with a column mapping."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from indexer.converters.cifar10 import convert_cifar10, read_batch
from indexer.converters.folder import convert_folder
from indexer.converters.parquet_source import ColumnMapping, convert_parquet
from indexer.imageset import ImageSetError, load_arrays, read_image_set, read_info
from odh_core.images import DEFAULT_IMAGE_LIMITS


def _fake_cifar(root: Path, per_batch: int = 20) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [int(x) for x in rng.permutation(np.arange(per_batch) % 10)]
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        with open(root / name, "wb") as fh:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data}, fh)
    return root


def test_cifar10(tmp_path: Path) -> None:
    src = _fake_cifar(tmp_path / "src")
    out = str(tmp_path / "set")
    info = convert_cifar10(str(src), out, query_per_class=1, train_per_class=3, rows_per_part=50)
    assert info.counts == {"query": 10, "train": 30, "database": 80}
    assert info.channels == 3 and info.image_size == (32, 32) and info.class_names[0] == "airplane"
    assert read_info(out).protocol.name == "cifar10-1"
    assert len(list(Path(out).glob("part-*.parquet"))) == 3  # 120 rows, balanced parts of <= 50
    _, images, labels = load_arrays(out)
    x, y = read_batch(str(src / "data_batch_1"))
    np.testing.assert_array_equal(images[:20], x)  # channel-planar rows → HWC pixels
    assert labels[:20].argmax(axis=1).tolist() == y.tolist()
    table = read_image_set(out, splits=["query"])
    assert all(k.startswith("cifar-10/test_batch/") for k in table.column("key").to_pylist())


def test_cifar10_refuses_code_in_pickles(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, ("echo pwned",))  # what an attacker would call

    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(ValueError, match=r"refusing to load (posix|os|nt)\.system"):
        read_batch(str(tmp_path / "evil"))
    (tmp_path / "short").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]})
    )
    with pytest.raises(ValueError, match=r"'data' must be uint8\[N, 3072\]"):
        read_batch(str(tmp_path / "short"))
    src = _fake_cifar(tmp_path / "src")
    (src / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="test_batch"):
        convert_cifar10(str(src), str(tmp_path / "x"))


def _png(value: int, mode: str = "L", size: int = 12) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (size, size), value if mode == "L" else (value, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


def test_image_folder(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for c, cls in enumerate(["cat", "dog", "emu"]):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            (root / cls / f"{i}.png").write_bytes(_png(40 * c + i))
    (root / "dog" / "empty.png").write_bytes(b"")
    (root / "dog" / "huge.png").write_bytes(bytes(DEFAULT_IMAGE_LIMITS.max_bytes + 1))
    (root / "dog" / "notes.txt").write_text("not an image")
    out = str(tmp_path / "set")
    info = convert_folder(str(root), out, query_per_class=1, train_per_class=2, rows_per_part=7)
    assert info.class_names == ("cat", "dog", "emu") and info.name == "photos"
    assert info.image_size == (12, 12) and info.channels == 1
    assert info.counts == {"query": 3, "train": 6, "database": 9}
    table = read_image_set(out)
    assert table.num_rows == 18 and table.column("key")[6].as_py() == "dog/0.png"
    _, images, labels = load_arrays(out)
    assert images[6, 0, 0, 0] == 40 and labels[6].tolist() == [False, True, False]
    with pytest.raises(ValueError, match="no class subfolders"):
        convert_folder(str(root / "cat"), str(tmp_path / "x"))


def test_parquet_with_column_mapping(tmp_path: Path) -> None:
    n = 12
    src = tmp_path / "src.parquet"
    pq.write_table(
        pa.table(
            {
                "img": pa.array(
                    [{"bytes": _png(i, "RGB"), "path": f"p{i}"} for i in range(n)],
                    pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
                ),
                "uid": pa.array(np.arange(n) * 10, pa.int32()),
                "cls": [["zebra", "ant", "bee"][i % 3] for i in range(n)],
                "url": [f"http://x/{i}" for i in range(n)],
            }
        ),
        src,
    )
    out = str(tmp_path / "set")
    mapping = ColumnMapping(image="img", id="uid", label="cls", key="url")
    info = convert_parquet(str(src), out, columns=mapping, query_per_class=1, rows_per_part=5)
    assert info.class_names == ("ant", "bee", "zebra") and info.channels == 3
    assert info.counts == {"query": 3, "database": 9}
    table = read_image_set(out)
    assert table.column("id").to_pylist() == list(range(0, 120, 10))
    assert table.column("label").to_pylist()[:3] == [[2], [0], [1]]
    assert table.column("key")[1].as_py() == "http://x/1"
    with pytest.raises(ImageSetError, match=r"src\.parquet: no column 'picture' for --image-col"):
        convert_parquet(str(src), str(tmp_path / "x"), columns=ColumnMapping(image="picture"))
    with pytest.raises(ImageSetError, match="column 'url' has type string, expected int"):
        convert_parquet(str(src), str(tmp_path / "x"), columns=ColumnMapping(image="img", id="url"))
    dup = tmp_path / "dup.parquet"
    pq.write_table(pa.table({"image": [_png(1), _png(2)], "id": [3, 3]}), dup)
    with pytest.raises(ImageSetError, match="duplicate id 3"):
        convert_parquet(str(dup), str(tmp_path / "y"), columns=ColumnMapping(id="id"))
