"""Convert the CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``) into an image set.

The batches are pickled dicts of ``b"data"`` (uint8[N, 3072], channel-planar 32x32 RGB) and
``b"labels"``. They are read with a restricted unpickler that only rebuilds plain containers and
numpy arrays, so a tampered file cannot run code.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import time
from typing import Any

import numpy as np
import pyarrow as pa

from indexer.converters.png import encode_pngs
from indexer.converters.splits import stratified_splits
from indexer.imageset import IMAGE_SET_SCHEMA, DatasetInfo, SplitProtocol, write_image_set

logger = logging.getLogger(__name__)

CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("__builtin__", "list"),
    ("__builtin__", "dict"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Only numpy arrays and plain containers; anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch → ``(uint8[N, 32, 32, 3], int64[N] labels)``."""
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        obj = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a CIFAR-10 python batch: {exc}") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    obj = {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
    for key in ("data", "labels"):
        if key not in obj:
            raise ValueError(f"{path}: missing key {key!r}")
    data = np.asarray(obj["data"])
    labels = np.asarray(obj["labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: 'data' must be uint8[N, 3072], got {data.dtype}{data.shape}")
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{path}: {labels.shape[0]} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise ValueError(f"{path}: labels outside [0, {len(CLASS_NAMES)})")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def convert_cifar10(
    source_dir: str,
    output: str,
    *,
    seed: int = 0,
    rows_per_part: int = 10_000,
    query_per_class: int = 100,
    train_per_class: int = 500,
    storage_options: dict[str, Any] | None = None,
) -> DatasetInfo:
    """Write CIFAR-10 (ids 0..59999: the five training batches, then the test batch).

    Protocol ``cifar10-1`` (the usual hashing split): ``query_per_class`` test images per class
    are queries, ``train_per_class`` per class of the rest train, everything else is database
    (the train split is part of the database).
    """
    t0 = time.perf_counter()
    images, labels, keys, is_test = [], [], [], []
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        path = os.path.join(source_dir, name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{source_dir}: missing CIFAR-10 batch {name!r}")
        x, y = read_batch(path)
        images.append(x)
        labels.append(y)
        keys += [f"cifar-10/{name}/{i:05d}" for i in range(len(y))]
        is_test.append(np.full(len(y), name == TEST_BATCH))
    pixels = np.concatenate(images)
    label = np.concatenate(labels).astype(np.int32)
    n = len(label)
    split = stratified_splits(
        label, query_per_class=query_per_class, train_per_class=train_per_class, seed=seed,
        query_pool=np.concatenate(is_test),
    )  # fmt: skip
    logger.info("cifar-10: encoding %d PNGs", n)
    table = pa.Table.from_arrays(
        [
            pa.array(np.arange(n, dtype=np.int64)),
            pa.array(encode_pngs(pixels), pa.binary()),
            pa.ListArray.from_arrays(
                pa.array(np.arange(n + 1, dtype=np.int32)), pa.array(label, pa.int32())
            ),
            pa.array(keys, pa.string()),
            pa.array(split.tolist(), pa.string()),
        ],
        schema=IMAGE_SET_SCHEMA,
    )
    info = DatasetInfo(
        name="cifar-10",
        class_names=CLASS_NAMES,
        image_size=(32, 32),
        channels=3,
        protocol=SplitProtocol(name="cifar10-1", seed=seed),
    )
    info = write_image_set(table, output, info, rows_per_part, storage_options=storage_options)
    logger.info(
        "cifar-10 written to %s in %.1f s: %s", output, time.perf_counter() - t0, info.counts
    )
    return info
