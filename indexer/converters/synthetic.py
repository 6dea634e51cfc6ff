"""A small seeded, class-structured synthetic image set for tests and demos."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa

from indexer.converters.png import encode_pngs
from indexer.converters.splits import stratified_splits
from indexer.imageset import IMAGE_SET_SCHEMA, DatasetInfo, SplitProtocol, write_image_set

logger = logging.getLogger(__name__)


def class_pattern(cls: int, image_size: int) -> np.ndarray:
    """A distinct float32[H, W] pattern in [0, 1] per class: class-dependent stripes + a block."""
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float32) / image_size
    angle = np.pi * (cls * 0.618033988749895 % 1.0)
    freq = 2.0 + (cls % 3)
    phase = np.cos(angle) * xx + np.sin(angle) * yy
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq * phase + cls)
    # a class-specific bright block makes classes separable even at low resolution
    block = np.zeros_like(stripes)
    q = max(1, image_size // 4)
    r, c = divmod(cls % 16, 4)
    block[r * q : (r + 1) * q, c * q : (c + 1) * q] = 1.0
    return np.clip(0.6 * stripes + 0.4 * block, 0.0, 1.0)


def make_synthetic(
    output: str,
    *,
    n_classes: int = 4,
    per_class: int = 24,
    image_size: int = 28,
    seed: int = 0,
    noise: float = 0.15,
    query_per_class: int | None = None,
    train_per_class: int | None = None,
    rows_per_part: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> DatasetInfo:
    """Write ``n_classes * per_class`` grayscale images (class pattern + noise) as an image set.

    Splits (protocol ``synthetic-1``, shaped like ``fmnist-1``): ``query_per_class`` (default
    ``max(1, per_class // 6)``) queries and ``train_per_class`` (default ``per_class // 3``)
    training images per class; the rest is ``database``.
    """
    if n_classes < 1 or per_class < 2 or image_size < 4:
        raise ValueError(
            f"need n_classes >= 1, per_class >= 2, image_size >= 4; got "
            f"{n_classes}, {per_class}, {image_size}"
        )
    q = max(1, per_class // 6) if query_per_class is None else query_per_class
    t = per_class // 3 if train_per_class is None else train_per_class
    if q + t > per_class:
        raise ValueError(f"query_per_class + train_per_class = {q + t} > per_class = {per_class}")
    rng = np.random.default_rng(seed)
    n = n_classes * per_class
    labels = np.repeat(np.arange(n_classes, dtype=np.int32), per_class)
    patterns = np.stack([class_pattern(c, image_size) for c in range(n_classes)])
    pixels = patterns[labels] + rng.normal(0.0, noise, size=(n, image_size, image_size))
    images = (np.clip(pixels, 0.0, 1.0) * 255).round().astype(np.uint8)
    perm = rng.permutation(n)
    images, labels = images[perm], labels[perm]
    ids = np.arange(n, dtype=np.int64)
    split = stratified_splits(labels, query_per_class=q, train_per_class=t, seed=seed)
    table = pa.Table.from_arrays(
        [
            pa.array(ids),
            pa.array(encode_pngs(images), pa.binary()),
            pa.ListArray.from_arrays(
                pa.array(np.arange(n + 1, dtype=np.int32)), pa.array(labels, pa.int32())
            ),
            pa.array([f"synthetic/{i:06d}" for i in ids], pa.string()),
            pa.array(split.tolist(), pa.string()),
        ],
        schema=IMAGE_SET_SCHEMA,
    )
    info = DatasetInfo(
        name="synthetic",
        class_names=tuple(f"class_{c}" for c in range(n_classes)),
        image_size=(image_size, image_size),
        channels=1,
        protocol=SplitProtocol(name="synthetic-1", seed=seed),
    )
    parts = rows_per_part or max(1, (n + 1) // 2)
    info = write_image_set(table, output, info, parts, storage_options=storage_options)
    logger.info("synthetic image set %s: %s", output, info.counts)
    return info
