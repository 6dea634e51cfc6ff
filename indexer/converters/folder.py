"""Convert an image folder with one subfolder per class into an image set.

``root/<class>/<file>.png|jpg|jpeg|webp|bmp`` → one row per file: ids in sorted path order,
label = class index (classes sorted by name), key = the path relative to ``root``. The encoded
bytes are stored as they are (no re-encoding); zero-byte files and files over the image byte
limit (:data:`odh_core.images.DEFAULT_IMAGE_LIMITS`, the limit of every stage) are skipped with
a warning.
"""

from __future__ import annotations

import io
import logging
import os
from typing import Any

import numpy as np
import pyarrow as pa

from indexer.converters.splits import stratified_splits
from indexer.imageset import IMAGE_SET_SCHEMA, DatasetInfo, SplitProtocol, write_image_set
from odh_core.images import DEFAULT_IMAGE_LIMITS

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def sniff_image(data: bytes, source: str) -> tuple[tuple[int, int], int]:
    """``((H, W), channels)`` of an encoded image (channels 1 for grey, else 3)."""
    from PIL import Image, UnidentifiedImageError

    from odh_core.images import ALLOWED_IMAGE_FORMATS

    try:
        with Image.open(io.BytesIO(data), formats=list(ALLOWED_IMAGE_FORMATS)) as img:
            width, height = img.size
            mode = img.mode
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{source}: not a readable image: {exc}") from exc
    return (height, width), 1 if mode in ("L", "1", "I", "I;16", "F") else 3


def split_column(
    labels: np.ndarray, query_per_class: int, train_per_class: int, seed: int
) -> tuple[list[str] | None, SplitProtocol | None]:
    """Stratified ``query``/``train``/``database`` splits, or none when both counts are 0."""
    if query_per_class <= 0 and train_per_class <= 0:
        return None, None
    split = stratified_splits(
        labels, query_per_class=query_per_class, train_per_class=train_per_class, seed=seed
    )
    return split.tolist(), SplitProtocol(name="stratified-1", seed=seed)


def convert_folder(
    root: str,
    output: str,
    *,
    name: str | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    query_per_class: int = 0,
    train_per_class: int = 0,
    seed: int = 0,
    rows_per_part: int = 10_000,
    storage_options: dict[str, Any] | None = None,
) -> DatasetInfo:
    """Write the images under ``root/<class>/`` as an image set (see the module docstring).

    ``image_size``/``channels`` default to those of the first image (the encoder resizes).
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root} is not a directory")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise ValueError(f"{root}: no class subfolders")
    images: list[bytes] = []
    labels: list[int] = []
    keys: list[str] = []
    for cls_index, cls in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, cls)):
            dirnames.sort()
            for fname in sorted(filenames):
                if not fname.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                path = os.path.join(dirpath, fname)
                with open(path, "rb") as fh:
                    data = fh.read()
                if not data:
                    logger.warning("folder: skipping empty file %s", path)
                    continue
                if len(data) > DEFAULT_IMAGE_LIMITS.max_bytes:
                    logger.warning(
                        "folder: skipping %s: %d bytes, over the image limit of %d",
                        path, len(data), DEFAULT_IMAGE_LIMITS.max_bytes,
                    )  # fmt: skip
                    continue
                images.append(data)
                labels.append(cls_index)
                keys.append(os.path.relpath(path, root))
    if not images:
        raise ValueError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    (h, w), ch = sniff_image(images[0], os.path.join(root, keys[0]))
    label_arr = np.asarray(labels, dtype=np.int32)
    split, protocol = split_column(label_arr, query_per_class, train_per_class, seed)
    n = len(images)
    cols = {
        "id": pa.array(np.arange(n, dtype=np.int64)),
        "image": pa.array(images, pa.binary()),
        "label": pa.ListArray.from_arrays(
            pa.array(np.arange(n + 1, dtype=np.int32)), pa.array(label_arr, pa.int32())
        ),
        "key": pa.array(keys, pa.string()),
    }
    if split is not None:
        cols["split"] = pa.array(split, pa.string())
    schema = pa.schema([IMAGE_SET_SCHEMA.field(c) for c in cols])
    info = DatasetInfo(
        name=name or os.path.basename(os.path.normpath(root)),
        class_names=tuple(classes),
        image_size=(image_size, image_size) if image_size else (h, w),
        channels=channels or ch,
        protocol=protocol,
    )
    table = pa.Table.from_pydict(cols, schema=schema)
    info = write_image_set(table, output, info, rows_per_part, storage_options=storage_options)
    logger.info("folder %s: %d images in %d classes → %s", root, n, len(classes), output)
    return info
