"""Reading an encode job's output: ``codes/part-*.parquet``, ``rejects/``, ``_encode.json``."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from indexer import storage
from odh_core.packing import check_n_bits

logger = logging.getLogger(__name__)

CODES_DIR = "codes"
REJECTS_DIR = "rejects"
ENCODE_INFO_FILE = "_encode.json"
SUMMARY_FILE = "_summary.json"
REJECT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64()),
        pa.field("key", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("error", pa.string()),
    ]
)


def code_schema(n_bits: int) -> pa.Schema:
    """Schema of a code part for ``n_bits``-bit codes."""
    n_bits = check_n_bits(n_bits, "n_bits")
    return pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("code", pa.binary(n_bits // 8), nullable=False),
            pa.field("key", pa.string()),
            pa.field("label", pa.list_(pa.int32())),
            pa.field("split", pa.string()),
        ]
    )


def read_encode_info(path: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``_encode.json`` of a code directory (EncodeConfig, checkpoint uri/sha256, n_bits)."""
    info = storage.read_json(storage.join(path, ENCODE_INFO_FILE), storage_options)
    if not isinstance(info, dict) or "n_bits" not in info:
        raise ValueError(f"{storage.join(path, ENCODE_INFO_FILE)}: missing field 'n_bits'")
    return info


def _list(path: str, sub: str, storage_options: dict[str, Any] | None) -> list[str]:
    fs, root = storage.url_to_fs(storage.join(path, sub), storage_options)
    if not fs.exists(root):
        return []
    names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
    return [
        storage.join(path, sub, n)
        for n in names
        if n.startswith("part-") and n.endswith(".parquet")
    ]


def list_code_parts(path: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Sorted URIs of ``codes/part-*.parquet``."""
    return _list(path, CODES_DIR, storage_options)


def list_reject_parts(path: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Sorted URIs of ``rejects/part-*.parquet``."""
    return _list(path, REJECTS_DIR, storage_options)


def _check_code_column(table: pa.Table, n_bits: int | None, source: str) -> None:
    if "code" not in table.column_names:
        return
    t = table.schema.field("code").type
    if not pa.types.is_fixed_size_binary(t):
        raise ValueError(f"{source}: column 'code' has type {t}, expected fixed_size_binary")
    if n_bits is not None and t.byte_width * 8 != n_bits:
        raise ValueError(
            f"{source}: column 'code' holds {t.byte_width * 8}-bit codes, expected {n_bits}"
        )


def read_codes(
    path: str,
    *,
    columns: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pa.Table:
    """Read every code part (optionally only ``splits``); checks code length vs _encode.json."""
    parts = list_code_parts(path, storage_options)
    if not parts:
        raise FileNotFoundError(f"{path}: no {CODES_DIR}/part-*.parquet files")
    try:
        n_bits: int | None = int(read_encode_info(path, storage_options)["n_bits"])
    except FileNotFoundError:
        n_bits = None
    read_cols = None
    if columns is not None:
        read_cols = list(dict.fromkeys([*columns, *(["split"] if splits is not None else [])]))
    tables = []
    for uri in parts:
        fs, p = storage.url_to_fs(uri, storage_options)
        names = pq.read_schema(p, filesystem=fs).names
        for col in ("id", "code"):
            if col not in names:
                raise ValueError(f"{uri}: missing required column {col!r}")
        if read_cols is not None:
            missing = [c for c in read_cols if c not in names]
            if missing:
                raise ValueError(f"{uri}: missing column {missing[0]!r}")
        table = pq.read_table(p, filesystem=fs, columns=read_cols)
        _check_code_column(table, n_bits, uri)
        tables.append(table)
    table = pa.concat_tables(tables)
    if splits is not None:
        if "split" not in table.column_names:
            raise ValueError(f"{path}: splits {list(splits)} requested but codes have no 'split'")
        table = table.filter(pc.is_in(table.column("split"), pa.array(list(splits), pa.string())))
        if columns is not None and "split" not in columns:
            table = table.drop_columns(["split"])
    return table


def read_rejects(path: str, storage_options: dict[str, Any] | None = None) -> pa.Table:
    """All reject rows (``id``, ``key``, ``stage``, ``error``); empty table when none."""
    tables = []
    for uri in list_reject_parts(path, storage_options):
        fs, p = storage.url_to_fs(uri, storage_options)
        tables.append(pq.read_table(p, filesystem=fs))
    return pa.concat_tables(tables) if tables else REJECT_SCHEMA.empty_table()


def codes_to_numpy(
    column: pa.Array | pa.ChunkedArray, n_bits: int, source: str = "codes"
) -> np.ndarray:
    """A fixed_size_binary(n_bits/8) column → uint8[n, n_bits/8]."""
    if isinstance(column, pa.ChunkedArray):
        column = (
            column.combine_chunks() if column.num_chunks else pa.array([], pa.binary(n_bits // 8))
        )
    width = n_bits // 8
    t = column.type
    if not pa.types.is_fixed_size_binary(t):
        raise ValueError(
            f"{source}: column 'code' has type {t}, expected fixed_size_binary({width})"
        )
    if t.byte_width != width:
        raise ValueError(
            f"{source}: column 'code' holds {t.byte_width * 8}-bit codes, expected {n_bits}"
        )
    if column.null_count:
        raise ValueError(f"{source}: column 'code' has {column.null_count} null values")
    n = len(column)
    if n == 0:
        return np.zeros((0, width), dtype=np.uint8)
    buf = np.frombuffer(column.buffers()[1], dtype=np.uint8)
    start = column.offset * width
    return buf[start : start + n * width].reshape(n, width).copy()


def code_arrays(
    table: pa.Table, n_bits: int, source: str = "codes table"
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids int64[n], codes uint8[n, n_bits/8])`` of a codes table; wrong length: ValueError."""
    n_bits = check_n_bits(n_bits, "n_bits")
    for col in ("id", "code"):
        if col not in table.column_names:
            raise ValueError(f"{source}: missing column {col!r}")
    ids = table.column("id").to_numpy().astype(np.int64, copy=False)
    return ids, codes_to_numpy(table.column("code"), n_bits, source)


def _optional_column(
    name: str, values: Sequence[Any] | pa.Array | None, n: int, type_: pa.DataType
) -> pa.Array | None:
    if values is None:
        return None
    if len(values) != n:
        raise ValueError(f"write_code_set: {name} has {len(values)} rows, ids has {n}")
    try:
        return values.cast(type_) if isinstance(values, pa.Array) else pa.array(values, type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
        raise ValueError(f"write_code_set: {name} is not convertible to {type_}: {exc}") from exc


def write_code_set(
    root: str,
    ids: np.ndarray,
    codes: np.ndarray,
    n_bits: int,
    *,
    labels: Sequence[Sequence[int] | None] | pa.Array | None = None,
    keys: Sequence[str | None] | pa.Array | None = None,
    splits: Sequence[str | None] | pa.Array | None = None,
    encode_info: Mapping[str, Any] | None = None,
    rows_per_part: int = 1_000_000,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Write ``(ids, codes)`` as a code directory in the format the encode job writes.

    ``root/codes/part-NNNNN.parquet`` (``id``, ``code`` fixed_size_binary(n_bits/8) and, when
    given, ``key``/``label``/``split``), then ``root/_encode.json`` (``{"n_bits": ..,
    **encode_info}``) last. Every file is written atomically (temp name + rename locally, one put
    on object stores); stale ``codes/part-*`` files are removed first. Returns ``root``.
    """
    n_bits = check_n_bits(n_bits, "n_bits")
    width = n_bits // 8
    ids_arr = np.asarray(ids)
    if ids_arr.ndim != 1 or ids_arr.dtype.kind not in "iu":
        raise ValueError(f"write_code_set: ids must be int[n], got {ids_arr.dtype}{ids_arr.shape}")
    codes_arr = np.ascontiguousarray(codes)
    n = len(ids_arr)
    if codes_arr.dtype != np.uint8 or codes_arr.shape != (n, width):
        raise ValueError(
            f"write_code_set: codes must be uint8[{n}, {width}] for {n_bits}-bit codes, "
            f"got {codes_arr.dtype}{list(codes_arr.shape)}"
        )
    if rows_per_part < 1:
        raise ValueError(f"write_code_set: rows_per_part must be >= 1, got {rows_per_part}")
    full = code_schema(n_bits)
    extra = {
        name: col
        for name, col in (
            ("key", _optional_column("keys", keys, n, full.field("key").type)),
            ("label", _optional_column("labels", labels, n, full.field("label").type)),
            ("split", _optional_column("splits", splits, n, full.field("split").type)),
        )
        if col is not None
    }
    schema = pa.schema([full.field(c) for c in ("id", "code", *extra)])
    for stale in list_code_parts(root, storage_options):
        fs, path = storage.url_to_fs(stale, storage_options)
        fs.rm(path)
    n_parts = max(1, math.ceil(n / rows_per_part))
    for i in range(n_parts):
        start, stop = i * rows_per_part, min(n, (i + 1) * rows_per_part)
        block = codes_arr[start:stop]
        code_col = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(width), stop - start, [None, pa.py_buffer(block)]
        )
        columns = [pa.array(ids_arr[start:stop], pa.int64()), code_col]
        columns += [col.slice(start, stop - start) for col in extra.values()]
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_arrays(columns, schema=schema), buf)
        storage.write_bytes_atomic(
            storage.join(root, CODES_DIR, f"part-{i:05d}.parquet"), buf.getvalue(), storage_options
        )
    info = {**(encode_info or {}), "n_bits": n_bits}
    storage.write_json_atomic(storage.join(root, ENCODE_INFO_FILE), info, storage_options)
    logger.info("wrote code set %s: %d %d-bit codes in %d parts", root, n, n_bits, n_parts)
    return root
