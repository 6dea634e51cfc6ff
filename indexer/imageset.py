"""The image-set format: ``part-NNNNN.parquet`` files plus ``_dataset.json``.

Columns: ``id`` int64 (unique, >= 0), ``image`` binary (encoded PNG/JPEG/WebP), ``label``
list<int32> (optional), ``key`` string (optional), ``split`` string (optional:
``train``/``query``/``database``). Reading validates every part and raises
:class:`ImageSetError` naming the file and column.
"""

from __future__ import annotations

import io
import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from indexer import storage
from odh_core import formats
from odh_core.images import DEFAULT_IMAGE_LIMITS, decode_image
from odh_core.labels import labels_to_multihot

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
INFO_FILE = "_dataset.json"
SPLITS = ("train", "query", "database")
_PART_RE = re.compile(r"^part-\d{5,}\.parquet$")

IMAGE_SET_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("image", pa.binary(), nullable=False),
        pa.field("label", pa.list_(pa.int32())),
        pa.field("key", pa.string()),
        pa.field("split", pa.string()),
    ]
)
REQUIRED_COLUMNS = ("id", "image")


class ImageSetError(ValueError):
    """An image set that does not follow the format; the message names the file and column."""


@dataclass(frozen=True)
class SplitProtocol:
    """Which splits are queries, database and training data for evaluation."""

    name: str
    seed: int = 0
    query_splits: tuple[str, ...] = ("query",)
    database_splits: tuple[str, ...] = ("train", "database")
    train_splits: tuple[str, ...] = ("train",)

    __json_source__: ClassVar[str] = f"{INFO_FILE} protocol"

    def to_json(self) -> dict[str, Any]:
        return formats.to_json(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any], source: str | None = None) -> SplitProtocol:
        return formats.from_json(cls, obj, source, error=ImageSetError)


@dataclass(frozen=True)
class DatasetInfo:
    """Contents of ``_dataset.json`` (read and written by :mod:`odh_core.formats`)."""

    name: str
    class_names: tuple[str, ...]
    image_size: tuple[int, int]
    channels: int
    counts: dict[str, int] = field(default_factory=dict)
    protocol: SplitProtocol | None = None
    format_version: int = FORMAT_VERSION
    # optional class hierarchy {child: parent} over class (and group) names, see odh_core.hierarchy
    hierarchy: dict[str, str] | None = None

    __json_source__: ClassVar[str] = INFO_FILE

    def __post_init__(self) -> None:
        if len(self.image_size) != 2 or min(self.image_size) <= 0:
            raise ValueError(f"image_size must be [H, W] > 0, got {self.image_size!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels!r}")
        if self.hierarchy is not None:
            from odh_core.hierarchy import check_hierarchy

            check_hierarchy(self.hierarchy, self.class_names)

    def label_distances(self) -> np.ndarray | None:
        """``[C, C]`` hierarchy distances in [0, 1], or None without a hierarchy."""
        if self.hierarchy is None:
            return None
        from odh_core.hierarchy import hierarchy_distances

        return hierarchy_distances(self.hierarchy, self.class_names)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def to_json(self) -> dict[str, Any]:
        out = formats.to_json(self)
        if out.get("hierarchy") is None:
            out.pop("hierarchy", None)  # optional: files without one stay as they were
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any], source: str = INFO_FILE) -> DatasetInfo:
        return formats.from_json(cls, obj, source, error=ImageSetError)


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def read_info(path: str, storage_options: dict[str, Any] | None = None) -> DatasetInfo:
    """Read ``_dataset.json`` of an image set."""
    uri = storage.join(path, INFO_FILE)
    return DatasetInfo.from_json(storage.read_json(uri, storage_options), source=uri)


def list_parts(path: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Sorted URIs of the ``part-*.parquet`` files under ``path``."""
    fs, root = storage.url_to_fs(path, storage_options)
    if not fs.exists(root):
        raise FileNotFoundError(f"{path} does not exist")
    names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
    return [storage.join(path, n) for n in names if _PART_RE.match(n)]


def _as_table(tables: pa.Table | Iterable[pa.Table]) -> pa.Table:
    if isinstance(tables, pa.Table):
        return tables
    tables = list(tables)
    if not tables:
        raise ValueError("write_image_set: no tables given")
    return pa.concat_tables(tables, promote_options="default")


def write_image_set(
    tables: pa.Table | Iterable[pa.Table],
    output: str,
    info: DatasetInfo,
    rows_per_part: int = 10_000,
    *,
    storage_options: dict[str, Any] | None = None,
) -> DatasetInfo:
    """Validate and write rows as balanced ``part-NNNNN.parquet`` files, then ``_dataset.json``.

    ``counts`` in the written info are computed from the ``split`` column (or ``{"all": n}``).
    Stale ``part-*`` files in ``output`` are removed first. Returns the written info.
    """
    if rows_per_part <= 0:
        raise ValueError(f"rows_per_part must be > 0, got {rows_per_part}")
    table = _as_table(tables)
    table = _conform(table, source="write_image_set input")
    _validate_table(table, source="write_image_set input")
    _check_unique([table.column("id").to_numpy()], ["write_image_set input"])
    n = table.num_rows
    if "split" in table.column_names:
        splits, counts = np.unique(
            table.column("split").fill_null("").to_numpy(zero_copy_only=False),
            return_counts=True,
        )
        count_map = {str(s): int(c) for s, c in zip(splits, counts, strict=True)}
    else:
        count_map = {"all": n}
    info = replace(info, counts=count_map)

    fs, root = storage.url_to_fs(output, storage_options)
    fs.makedirs(root, exist_ok=True)
    for stale in list_parts(output, storage_options) if fs.exists(root) else []:
        logger.info("removing stale part %s", stale)
        sfs, spath = storage.url_to_fs(stale, storage_options)
        sfs.rm(spath)
    n_parts = max(1, math.ceil(n / rows_per_part))
    bounds = np.linspace(0, n, n_parts + 1).round().astype(int)
    for i in range(n_parts):
        part = table.slice(int(bounds[i]), int(bounds[i + 1] - bounds[i]))
        buf = io.BytesIO()
        pq.write_table(part, buf)
        storage.write_bytes_atomic(
            storage.join(output, part_name(i)), buf.getvalue(), storage_options
        )
    storage.write_json_atomic(storage.join(output, INFO_FILE), info.to_json(), storage_options)
    logger.info("wrote image set %s: %d rows in %d parts, counts %s", output, n, n_parts, count_map)
    return info


def _conform(table: pa.Table, source: str, required: Sequence[str] = REQUIRED_COLUMNS) -> pa.Table:
    """Check column types (naming the column) and cast to the canonical schema."""
    names = table.column_names
    for col in required:
        if col not in names:
            raise ImageSetError(f"{source}: missing required column {col!r}")
    cols = []
    fields = []
    for fld in IMAGE_SET_SCHEMA:
        if fld.name not in names:
            continue
        col = table.column(fld.name)
        t = col.type
        ok = {
            "id": pa.types.is_integer(t),
            "image": pa.types.is_binary(t) or pa.types.is_large_binary(t),
            "label": (pa.types.is_list(t) or pa.types.is_large_list(t))
            and pa.types.is_integer(t.value_type),
            "key": pa.types.is_string(t) or pa.types.is_large_string(t),
            "split": pa.types.is_string(t) or pa.types.is_large_string(t),
        }[fld.name]
        if not ok:
            raise ImageSetError(f"{source}: column {fld.name!r} has type {t}, expected {fld.type}")
        cols.append(col.cast(fld.type) if t != fld.type else col)
        fields.append(fld)
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


def check_part_schema(uri: str, storage_options: dict[str, Any] | None = None) -> pa.Schema:
    """Check one part's column names and types without reading rows; returns its schema."""
    fs, p = storage.url_to_fs(uri, storage_options)
    try:
        schema = pq.read_schema(p, filesystem=fs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ImageSetError(f"{uri}: not a readable Parquet file: {exc}") from exc
    _conform(schema.empty_table(), uri)
    return schema


def _validate_table(table: pa.Table, source: str) -> None:
    """Row-level checks: no null/negative ids, no empty or oversized images (the byte limit of
    :data:`odh_core.images.DEFAULT_IMAGE_LIMITS`), known split names."""
    ids = table.column("id")
    if ids.null_count:
        raise ImageSetError(f"{source}: column 'id' has {ids.null_count} null values")
    if table.num_rows and pc.min(ids).as_py() < 0:
        raise ImageSetError(f"{source}: column 'id' has negative values (ids must be >= 0)")
    if "image" in table.column_names:
        img = table.column("image")
        lengths = pc.fill_null(pc.binary_length(img), 0)
        n_empty = table.num_rows - pc.sum(pc.greater(lengths, 0)).as_py() if table.num_rows else 0
        if n_empty:
            raise ImageSetError(f"{source}: column 'image' has {n_empty} null or empty values")
        limit = DEFAULT_IMAGE_LIMITS.max_bytes
        if table.num_rows and pc.max(lengths).as_py() > limit:
            row = pc.index(pc.greater(lengths, limit), True).as_py()
            raise ImageSetError(
                f"{source}: column 'image' of id {ids[row].as_py()} holds "
                f"{lengths[row].as_py()} bytes, over the image limit of {limit}"
            )
    if "split" in table.column_names and table.num_rows:
        values = set(pc.unique(table.column("split")).to_pylist())
        bad = values - set(SPLITS) - {None}
        if bad:
            raise ImageSetError(
                f"{source}: column 'split' has unknown values {sorted(bad)} (allowed {SPLITS})"
            )


INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def _list_values_out_of_range(col: pa.ChunkedArray | pa.Array, low: int, high: int) -> np.ndarray:
    """Rows of a list<int> column holding a value outside ``[low, high]``."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    flat = pc.list_flatten(arr)
    if len(flat) == 0:
        return np.zeros(0, dtype=np.int64)
    parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
    # compare in the column's own type widened to Python ints (uint64 values above int64 too)
    bad = pc.or_(pc.less(flat, low), pc.greater(flat, high)).to_numpy(zero_copy_only=False)
    bad = np.asarray(bad, dtype=bool) & ~np.asarray(pc.is_null(flat).to_numpy(False), dtype=bool)
    return np.unique(parents[bad])


def row_problems(table: pa.Table, n_classes: int | None = None) -> list[str | None]:
    """Per-row value-range checks of image-set rows (types were checked by the schema): the
    reason a row cannot be indexed, or None. Checked: ``id`` present, >= 0 and within int64;
    every ``label`` value >= 0, within int32 and below ``n_classes`` (when known); ``split`` one
    of :data:`SPLITS`. The encode job turns each problem into a reject row."""
    n = table.num_rows
    out: list[str | None] = [None] * n
    if not n:
        return out
    ids = table.column("id")
    id_values = ids.to_pylist()
    for row, value in enumerate(id_values):
        if value is None:
            out[row] = "ValueError: id is null"
        elif value < 0 or value > INT64_MAX:
            out[row] = f"ValueError: id {value} is out of range (0..{INT64_MAX})"
    if "label" in table.column_names:
        high = INT32_MAX if n_classes is None else min(INT32_MAX, int(n_classes) - 1)
        for row in _list_values_out_of_range(table.column("label"), 0, high).tolist():
            values = table.column("label")[row].as_py()
            bad = [v for v in values if v is not None and not 0 <= v <= high][:3]
            limit = f"below n_classes {n_classes}" if n_classes is not None else "within int32"
            out[row] = out[row] or (
                f"ValueError: label value(s) {bad} out of range (must be >= 0 and {limit})"
            )
    if "split" in table.column_names:
        for row, value in enumerate(table.column("split").to_pylist()):
            if value is not None and value not in SPLITS:
                out[row] = out[row] or f"ValueError: split {value!r} is not one of {SPLITS}"
    return out


def _check_unique(id_arrays: Sequence[np.ndarray], sources: Sequence[str]) -> None:
    if not id_arrays:
        return
    ids = np.concatenate(id_arrays)
    owner = np.concatenate([np.full(len(a), i) for i, a in enumerate(id_arrays)])
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if dup.size:
        j = dup[0]
        a, b = owner[order][j], owner[order][j + 1]
        where = sources[a] if a == b else f"{sources[a]} and {sources[b]}"
        raise ImageSetError(f"{where}: column 'id' has duplicate id {int(ids[order][j])}")


def read_image_set(
    path: str,
    *,
    splits: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pa.Table:
    """Read and validate every part; optionally keep only ``splits`` and ``columns``."""
    parts = list_parts(path, storage_options)
    if not parts:
        raise ImageSetError(f"{path}: no part-*.parquet files")
    wanted = list(columns) if columns is not None else None
    tables: list[pa.Table] = []
    for uri in parts:
        fs, p = storage.url_to_fs(uri, storage_options)
        try:
            names = pq.read_schema(p, filesystem=fs).names
        except (pa.ArrowInvalid, OSError) as exc:
            raise ImageSetError(f"{uri}: not a readable Parquet file: {exc}") from exc
        for col in REQUIRED_COLUMNS:
            if col not in names:
                raise ImageSetError(f"{uri}: missing required column {col!r}")
        read_cols = None
        if wanted is not None:
            extra = {"id"} | ({"split"} if splits is not None else set())
            read_cols = [c for c in names if c in set(wanted) | extra]
        table = pq.read_table(p, filesystem=fs, columns=read_cols)
        table = _conform(
            table, uri, required=[c for c in REQUIRED_COLUMNS if c in table.column_names]
        )
        _validate_table(table, uri)
        tables.append(table)
    _check_unique([t.column("id").to_numpy() for t in tables], parts)
    table = pa.concat_tables(tables, promote_options="default")
    if splits is not None:
        if "split" not in table.column_names:
            raise ImageSetError(f"{path}: splits {list(splits)} requested but no 'split' column")
        table = table.filter(pc.is_in(table.column("split"), pa.array(list(splits), pa.string())))
    if wanted is not None:
        table = table.select([c for c in wanted if c in table.column_names])
    return table


def label_column_to_multihot(labels: pa.ChunkedArray | pa.Array, n_classes: int) -> np.ndarray:
    """The ``label`` list<int32> column → ``bool[n, n_classes]`` (null: no label) with
    :func:`odh_core.labels.labels_to_multihot`; out-of-range labels raise ValueError."""
    if isinstance(labels, pa.ChunkedArray):
        labels = labels.combine_chunks() if labels.num_chunks else pa.array([], labels.type)
    rows = labels.to_numpy(zero_copy_only=False)  # object array: int arrays, None for nulls
    return labels_to_multihot(list(rows), n_classes)


def has_label_column(path: str, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether any part of the image set has a ``label`` column (read from the Parquet schemas
    only, so a method that needs labels is refused before any image is decoded)."""
    for uri in list_parts(path, storage_options):
        fs, p = storage.url_to_fs(uri, storage_options)
        if "label" in pq.read_schema(p, filesystem=fs).names:
            return True
    return False


def load_arrays(
    path: str,
    splits: Sequence[str] | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode to ``(ids int64[n], uint8[n, H, W, C], multi-hot bool[n, n_classes])`` (all-False
    label rows for a set without labels)."""
    ids, images, labels = load_arrays_unlabelled_ok(path, splits, storage_options=storage_options)
    if labels is None:
        labels = np.zeros((len(ids), read_info(path, storage_options).n_classes), dtype=bool)
    return ids, images, labels


def load_arrays_unlabelled_ok(
    path: str,
    splits: Sequence[str] | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """As :func:`load_arrays`, but the labels are None when the rows carry none (no ``label``
    column, or only nulls in it): an unlabelled set."""
    info = read_info(path, storage_options)
    h, w = info.image_size
    if h != w:
        raise ImageSetError(f"{path}: load_arrays needs square images, image_size is {h}x{w}")
    table = read_image_set(path, splits=splits, storage_options=storage_options)
    ids = table.column("id").to_numpy().astype(np.int64)
    images = np.empty((table.num_rows, h, w, info.channels), dtype=np.uint8)
    for i, data in enumerate(table.column("image").to_pylist()):
        images[i] = decode_image(data, image_size=h, channels=info.channels)
    labelled = "label" in table.column_names and table.column("label").null_count < table.num_rows
    if not labelled:
        return ids, images, None
    return ids, images, label_column_to_multihot(table.column("label"), info.n_classes)
