"""Convert any Parquet data set into an image set, given which columns hold what.

The image column may be binary (encoded bytes) or a struct with a ``bytes`` field (the Hugging
Face ``Image`` feature). Labels may be integers, lists of integers or strings (class names,
indexed in sorted order). Ids default to the row number; keys are optional.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from indexer import storage
from indexer.converters.folder import sniff_image, split_column
from indexer.imageset import IMAGE_SET_SCHEMA, DatasetInfo, ImageSetError, write_image_set

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ColumnMapping:
    """Source column names; ``None`` means the column is absent."""

    image: str = "image"
    id: str | None = None
    label: str | None = None
    key: str | None = None
    split: str | None = None


def _read_source(source: str, storage_options: dict[str, Any] | None) -> tuple[pa.Table, str]:
    fs, path = storage.url_to_fs(source, storage_options)
    if not fs.exists(path):
        raise FileNotFoundError(f"{source} does not exist")
    if fs.isdir(path):
        files = sorted(p for p in fs.find(path) if p.endswith(".parquet"))
        if not files:
            raise ValueError(f"{source}: no .parquet files")
    else:
        files = [path]
    try:
        tables = [pq.read_table(f, filesystem=fs) for f in files]
    except (pa.ArrowInvalid, OSError) as exc:
        raise ImageSetError(f"{source}: not readable as Parquet: {exc}") from exc
    return pa.concat_tables(tables, promote_options="default"), files[0]


def _column(table: pa.Table, name: str, role: str, source: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise ImageSetError(
            f"{source}: no column {name!r} for --{role}-col (columns: {table.column_names})"
        )
    return table.column(name)


def _images(col: pa.ChunkedArray, name: str, source: str) -> pa.Array:
    arr = col.combine_chunks()
    if pa.types.is_struct(arr.type):
        if arr.type.get_field_index("bytes") < 0:
            raise ImageSetError(f"{source}: column {name!r} is a struct without a 'bytes' field")
        arr = arr.field("bytes")
    if not (pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)):
        raise ImageSetError(f"{source}: column {name!r} has type {arr.type}, expected binary")
    return arr.cast(pa.binary())


def _labels(col: pa.ChunkedArray, name: str, source: str) -> tuple[pa.Array, tuple[str, ...]]:
    arr = col.combine_chunks()
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if arr.null_count:
            raise ImageSetError(f"{source}: column {name!r} has {arr.null_count} null labels")
        names = tuple(sorted(set(arr.to_pylist())))
        index = pc.index_in(arr, value_set=pa.array(names)).cast(pa.int32())
        flat = index
        classes = names
    elif pa.types.is_integer(t):
        flat = arr.cast(pa.int32())
        classes = ()
    elif (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_integer(t.value_type):
        return arr.cast(pa.list_(pa.int32())), ()
    else:
        raise ImageSetError(f"{source}: column {name!r} has type {t}, expected int, list or string")
    offsets = pa.array(np.arange(len(flat) + 1, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, flat), classes


def convert_parquet(
    source: str,
    output: str,
    *,
    columns: ColumnMapping | None = None,
    name: str = "parquet",
    image_size: int | None = None,
    channels: int | None = None,
    query_per_class: int = 0,
    train_per_class: int = 0,
    seed: int = 0,
    rows_per_part: int = 10_000,
    storage_options: dict[str, Any] | None = None,
) -> DatasetInfo:
    """Write a Parquet file or directory (local or ``s3://``) as an image set."""
    cols = columns or ColumnMapping()
    table, first = _read_source(source, storage_options)
    n = table.num_rows
    if n == 0:
        raise ImageSetError(f"{source}: no rows")
    out: dict[str, pa.Array] = {}
    if cols.id is not None:
        ids = _column(table, cols.id, "id", source).combine_chunks()
        if not pa.types.is_integer(ids.type):
            raise ImageSetError(f"{source}: column {cols.id!r} has type {ids.type}, expected int")
        out["id"] = ids.cast(pa.int64())
    else:
        out["id"] = pa.array(np.arange(n, dtype=np.int64))
    out["image"] = _images(_column(table, cols.image, "image", source), cols.image, source)
    classes: tuple[str, ...] = ()
    label_ids: np.ndarray | None = None
    if cols.label is not None:
        out["label"], classes = _labels(
            _column(table, cols.label, "label", source), cols.label, source
        )
        flat = pc.list_flatten(out["label"]).to_numpy(zero_copy_only=False)
        if flat.size and flat.min() < 0:
            raise ImageSetError(f"{source}: column {cols.label!r} has negative labels")
        if not classes:
            classes = tuple(str(c) for c in range(int(flat.max()) + 1 if flat.size else 0))
        lengths = pc.list_value_length(out["label"]).to_numpy(zero_copy_only=False)
        if (lengths == 1).all():
            label_ids = flat
    if cols.key is not None:
        out["key"] = _column(table, cols.key, "key", source).combine_chunks().cast(pa.string())
    if cols.split is not None:
        out["split"] = (
            _column(table, cols.split, "split", source).combine_chunks().cast(pa.string())
        )
    elif query_per_class > 0 or train_per_class > 0:
        if label_ids is None:
            raise ValueError("query/train splits need a single-label --label-col")
        split, _ = split_column(label_ids, query_per_class, train_per_class, seed)
        out["split"] = pa.array(split, pa.string())
    first_image = next((b for b in out["image"].to_pylist()[:1] if b), None)
    if first_image is None:
        raise ImageSetError(f"{first}: column {cols.image!r}: the first image is empty")
    (h, w), ch = sniff_image(first_image, f"{first}: column {cols.image!r} row 0")
    protocol = None
    if "split" in out:
        from indexer.imageset import SplitProtocol

        protocol = SplitProtocol(name="stratified-1", seed=seed)
    info = DatasetInfo(
        name=name,
        class_names=classes,
        image_size=(image_size, image_size) if image_size else (h, w),
        channels=channels or ch,
        protocol=protocol,
    )
    result = pa.Table.from_pydict(out, schema=pa.schema([IMAGE_SET_SCHEMA.field(c) for c in out]))
    info = write_image_set(result, output, info, rows_per_part, storage_options=storage_options)
    logger.info("parquet %s: %d rows → %s", source, n, output)
    return info
