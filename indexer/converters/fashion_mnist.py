"""Convert the Fashion-MNIST IDX files into an image set (protocols ``fmnist-1`` / ``fmnist-2``)."""

from __future__ import annotations

import gzip
import logging
import os
import time
from typing import Any

import numpy as np
import pyarrow as pa

from indexer.converters.configs import FASHION_MNIST_PROTOCOLS
from indexer.converters.png import encode_pngs
from indexer.converters.splits import stratified_splits
from indexer.imageset import IMAGE_SET_SCHEMA, DatasetInfo, SplitProtocol, write_image_set

logger = logging.getLogger(__name__)

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# This project's choice of a class hierarchy for Fashion-MNIST ({class: group}): tops
# (T-shirt/top, Pullover, Coat, Shirt) and footwear (Sandal, Sneaker, Ankle boot); Trouser, Dress
# and Bag hang from the root. Written into _dataset.json for SHREWD and mAHP@k.
HIERARCHY = {
    "T-shirt/top": "tops",
    "Pullover": "tops",
    "Coat": "tops",
    "Shirt": "tops",
    "Sandal": "footwear",
    "Sneaker": "footwear",
    "Ankle boot": "footwear",
}
DEFAULT_SOURCE = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
PROTOCOLS = FASHION_MNIST_PROTOCOLS
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPE = {0x08: np.uint8}


def fashion_mnist_source(explicit: str | None = None) -> str:
    """The Fashion-MNIST IDX directory: ``explicit``, ``$ODH_FASHION_MNIST`` or the Debian path."""
    source = explicit or os.environ.get("ODH_FASHION_MNIST") or DEFAULT_SOURCE
    if not os.path.isfile(os.path.join(source, "train-images-idx3-ubyte.gz")):
        raise FileNotFoundError(
            f"Fashion-MNIST IDX files not found in {source!r}: install the Debian package "
            "'dataset-fashion-mnist' (make does this) or point ODH_FASHION_MNIST / --source at a "
            "directory holding train-images-idx3-ubyte.gz and friends"
        )
    return source


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) of unsigned bytes into an array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code not in _IDX_DTYPE:
        raise ValueError(f"{path}: unsupported IDX element type 0x{dtype_code:02x}")
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(data[4:header], dtype=">u4"))
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: IDX header says {dims} ({expected} bytes), file has {len(data) - header}"
        )
    return np.frombuffer(data, dtype=_IDX_DTYPE[dtype_code], offset=header).reshape(dims)


def _find(source_dir: str, stem: str) -> str:
    for name in (f"{stem}.gz", stem):
        path = os.path.join(source_dir, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{source_dir}: missing {stem}.gz")


def read_fashion_mnist(source_dir: str, part: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``part`` (``"train"``: 60k, ``"test"``: 10k) of the IDX files in ``source_dir``:
    ``(images uint8[n, 28, 28], labels uint8[n])``, shapes and label range checked."""
    if part not in _FILES:
        raise ValueError(f"part must be one of {sorted(_FILES)}, got {part!r}")
    img_stem, lbl_stem = _FILES[part]
    images = read_idx(_find(source_dir, img_stem))
    labels = read_idx(_find(source_dir, lbl_stem))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{source_dir}: {part} images {images.shape} and labels {labels.shape} do not match"
        )
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise ValueError(f"{source_dir}: {part} labels exceed {len(CLASS_NAMES)} classes")
    return images, labels


def convert_fashion_mnist(
    source_dir: str,
    output: str,
    *,
    protocol: str = "fmnist-1",
    seed: int = 0,
    rows_per_part: int = 10_000,
    query_per_class: int = 100,
    train_per_class: int = 500,
    storage_options: dict[str, Any] | None = None,
) -> DatasetInfo:
    """Write Fashion-MNIST (ids 0..69999: train then test) as an image set with protocol splits.

    ``fmnist-1``: query = ``query_per_class`` test images per class, train = ``train_per_class``
    per class from the remaining images, database = the rest (the train split is part of the
    database). ``fmnist-2``: train = database = the training images, query = the test images.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    t0 = time.perf_counter()
    train_x, train_y = read_fashion_mnist(source_dir, "train")
    test_x, test_y = read_fashion_mnist(source_dir, "test")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise ValueError(
            f"{source_dir}: train {train_x.shape} and test {test_x.shape} sizes differ"
        )
    n_train, n_test = len(train_y), len(test_y)
    images = np.concatenate([train_x, test_x])
    labels = np.concatenate([train_y, test_y]).astype(np.int32)
    ids = np.arange(n_train + n_test, dtype=np.int64)
    keys = [f"fashion-mnist/train/{i:05d}" for i in range(n_train)]
    keys += [f"fashion-mnist/test/{i:05d}" for i in range(n_test)]
    is_test = ids >= n_train
    if protocol == "fmnist-1":
        split = stratified_splits(
            labels,
            query_per_class=query_per_class,
            train_per_class=train_per_class,
            seed=seed,
            query_pool=is_test,
        )
        proto = SplitProtocol(name=protocol, seed=seed, database_splits=("train", "database"))
    else:
        split = np.where(is_test, "query", "train").astype(object)
        proto = SplitProtocol(name=protocol, seed=seed, database_splits=("train",))
    logger.info("fashion-mnist: encoding %d PNGs", len(ids))
    pngs = encode_pngs(images)
    table = pa.Table.from_arrays(
        [
            pa.array(ids, pa.int64()),
            pa.array(pngs, pa.binary()),
            pa.ListArray.from_arrays(
                pa.array(np.arange(len(ids) + 1, dtype=np.int32)), pa.array(labels, pa.int32())
            ),
            pa.array(keys, pa.string()),
            pa.array(split.tolist(), pa.string()),
        ],
        schema=IMAGE_SET_SCHEMA,
    )
    info = DatasetInfo(
        name="fashion-mnist",
        class_names=CLASS_NAMES,
        image_size=(int(images.shape[1]), int(images.shape[2])),
        channels=1,
        protocol=proto,
        hierarchy=dict(HIERARCHY),
    )
    info = write_image_set(table, output, info, rows_per_part, storage_options=storage_options)
    logger.info(
        "fashion-mnist %s written to %s in %.1f s: %s",
        protocol,
        output,
        time.perf_counter() - t0,
        info.counts,
    )
    return info
