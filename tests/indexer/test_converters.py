"""Fashion-MNIST IDX converter (on a tiny fake IDX set) and the synthetic image set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from indexer.converters.fashion_mnist import convert_fashion_mnist, read_idx
from indexer.converters.synthetic import make_synthetic
from indexer.imageset import load_arrays, read_image_set, read_info


def test_read_idx_round_trip_and_bad_magic(
    tmp_path: Path, idx_writer: Callable[[Path, np.ndarray], None]
) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    idx_writer(tmp_path / "x.gz", arr)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "x.gz")), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match="bad magic"):
        read_idx(str(tmp_path / "bad"))
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05\x01")
    with pytest.raises(ValueError, match="file has 1"):
        read_idx(str(tmp_path / "short"))


def test_fmnist1_splits(tmp_path: Path, fake_fmnist: Callable[..., Path]) -> None:
    src = fake_fmnist(tmp_path / "src", 8, 4, n_classes=10, separable=False, shuffle=True)
    out = str(tmp_path / "fm1")
    info = convert_fashion_mnist(
        str(src), out, protocol="fmnist-1", seed=3, query_per_class=2, train_per_class=3,
        rows_per_part=50,
    )  # fmt: skip
    assert info.counts == {"query": 20, "train": 30, "database": 120 - 50}
    assert info.protocol is not None and info.protocol.name == "fmnist-1"
    assert info.protocol.database_splits == ("train", "database")
    assert read_info(out) == info
    assert info.hierarchy is not None and info.hierarchy["Sneaker"] == "footwear"  # SHREWD, mAHP
    table = read_image_set(out)
    assert table.column("id").to_pylist() == list(range(120))
    keys = table.column("key").to_pylist()
    assert keys[42] == "fashion-mnist/train/00042" and keys[80] == "fashion-mnist/test/00000"
    split = np.array(table.column("split").to_pylist())
    labels = np.array([lbl[0] for lbl in table.column("label").to_pylist()])
    ids = np.arange(120)
    assert (ids[split == "query"] >= 80).all()  # queries come from the test images
    for cls in range(10):
        assert ((split == "query") & (labels == cls)).sum() == 2
        assert ((split == "train") & (labels == cls)).sum() == 3
    # pixels survive PNG encoding, and the split is seeded
    _, images, _ = load_arrays(out, ["query"])
    raw = read_idx(str(src / "t10k-images-idx3-ubyte.gz"))
    np.testing.assert_array_equal(images[..., 0], raw[ids[split == "query"] - 80])
    again = convert_fashion_mnist(
        str(src), str(tmp_path / "again"), seed=3, query_per_class=2, train_per_class=3
    )
    assert again.counts == info.counts
    assert read_image_set(str(tmp_path / "again")).column("split").to_pylist() == split.tolist()


def test_fmnist2_splits(tmp_path: Path, fake_fmnist: Callable[..., Path]) -> None:
    src = fake_fmnist(tmp_path / "src", 8, 4, n_classes=10, separable=False, shuffle=True)
    info = convert_fashion_mnist(str(src), str(tmp_path / "fm2"), protocol="fmnist-2")
    assert info.counts == {"train": 80, "query": 40}
    assert info.protocol is not None and info.protocol.database_splits == ("train",)


def test_fmnist_errors(tmp_path: Path, fake_fmnist: Callable[..., Path]) -> None:
    src = fake_fmnist(tmp_path / "src", 8, 4, n_classes=10, separable=False, shuffle=True)
    with pytest.raises(ValueError, match="protocol must be one of"):
        convert_fashion_mnist(str(src), str(tmp_path / "x"), protocol="fmnist-3")
    with pytest.raises(ValueError, match="query_per_class=5"):
        convert_fashion_mnist(str(src), str(tmp_path / "x"), query_per_class=5)
    (src / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        convert_fashion_mnist(str(src), str(tmp_path / "x"))


def test_synthetic_set(tmp_path: Path) -> None:
    info = make_synthetic(str(tmp_path / "a"), n_classes=3, per_class=12, image_size=16, seed=1)
    assert info.counts == {"query": 6, "train": 12, "database": 18}
    assert info.protocol is not None and info.protocol.database_splits == ("train", "database")
    make_synthetic(str(tmp_path / "b"), n_classes=3, per_class=12, image_size=16, seed=1)
    assert read_image_set(str(tmp_path / "a")).equals(read_image_set(str(tmp_path / "b")))
    _, images, labels = load_arrays(str(tmp_path / "a"))
    assert images.shape == (36, 16, 16, 1) and labels.sum(axis=1).tolist() == [1] * 36
    # class structure: images are closer to their own class mean than to other class means
    cls = labels.argmax(axis=1)
    flat = images.reshape(36, -1).astype(np.float32)
    means = np.stack([flat[cls == c].mean(axis=0) for c in range(3)])
    nearest = ((flat[:, None, :] - means[None]) ** 2).sum(axis=2).argmin(axis=1)
    assert (nearest == cls).all()
