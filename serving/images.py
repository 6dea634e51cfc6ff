"""Stored image bytes by indexed id, for ``GET /v1/images/{id}`` and the search page.

The index meta (``meta-*.parquet``) holds ``id → key, label`` only; the bytes live in the image
set the index was encoded from. The index knows it through its provenance: the manifest's
``build.codes`` names the code directory, whose ``_encode.json`` names the ``image_set``. An
explicit ``images`` directory (``build_app`` argument) wins over that.

``ImageStore`` reads only the ``id`` column of every part once and keeps a sorted
``id → (part, row group, row)`` map; a request then reads one row group's ``image`` column (a
small LRU keeps the last few), never the whole set.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

#: Largest stored image ``GET /v1/images/{id}`` serves, in bytes.
MAX_SERVED_IMAGE_BYTES: int = 4 * 1024 * 1024
#: Row groups whose ``image`` column is kept in memory.
ROW_GROUP_CACHE: int = 8

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


class ImageUnavailable(LookupError):
    """No image to serve: no image set is known, or it lacks the id (message says which)."""


def content_type(data: bytes) -> str:
    """The media type of encoded image bytes, from their signature."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, media in _SIGNATURES:
        if data.startswith(magic):
            return media
    return "application/octet-stream"


def image_set_of(index_dir: str, storage_options: dict[str, Any] | None = None) -> str | None:
    """The image set an index was built from (manifest ``build.codes`` → ``_encode.json``
    ``image_set``), or ``None`` when its provenance does not say."""
    from indexer.codes import read_encode_info
    from indexer.manifest import read_manifest

    manifest = read_manifest(index_dir, storage_options)
    codes = manifest.build_config.get("codes")
    if not codes:
        return None
    try:
        info = read_encode_info(str(codes), storage_options)
    except (OSError, ValueError) as exc:
        logger.warning("index %s: cannot read the encode info of %s: %r", index_dir, codes, exc)
        return None
    image_set = info.get("image_set")
    return str(image_set) if image_set else None


def class_names_of(image_set: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """The class names of an image set (its ``_dataset.json``)."""
    from indexer.imageset import read_info

    return list(read_info(image_set, storage_options).class_names)


@dataclass(frozen=True)
class _Location:
    part: int
    row_group: int
    row: int


class ImageStore:
    """Image bytes by id from one image set (local or ``s3://``); thread-safe."""

    def __init__(self, image_set: str, storage_options: dict[str, Any] | None = None) -> None:
        from indexer import storage
        from indexer.imageset import list_parts

        self.image_set = image_set
        self._fs, _ = storage.url_to_fs(image_set, storage_options)
        self._parts = [storage.url_to_fs(p, storage_options)[1] for p in list_parts(image_set)]
        if not self._parts:
            raise FileNotFoundError(f"{image_set}: no part-*.parquet files")
        ids, parts, groups, rows = [], [], [], []
        for p, path in enumerate(self._parts):
            with self._fs.open(path, "rb") as f:
                pf = pq.ParquetFile(f)
                for rg in range(pf.num_row_groups):
                    col = pf.read_row_group(rg, columns=["id"]).column("id")
                    n = len(col)
                    ids.append(col.to_numpy().astype(np.int64, copy=False))
                    parts.append(np.full(n, p, np.int32))
                    groups.append(np.full(n, rg, np.int32))
                    rows.append(np.arange(n, dtype=np.int32))
        all_ids = np.concatenate(ids)
        order = np.argsort(all_ids, kind="stable")
        self._ids = all_ids[order]
        self._part = np.concatenate(parts)[order]
        self._group = np.concatenate(groups)[order]
        self._row = np.concatenate(rows)[order]
        self._cache: OrderedDict[tuple[int, int], pa.Array] = OrderedDict()
        self._lock = threading.Lock()
        logger.info("image store over %s: %d images", image_set, len(self._ids))

    def __len__(self) -> int:
        return len(self._ids)

    def _locate(self, image_id: int) -> _Location | None:
        pos = int(np.searchsorted(self._ids, image_id))
        if pos >= len(self._ids) or self._ids[pos] != image_id:
            return None
        return _Location(int(self._part[pos]), int(self._group[pos]), int(self._row[pos]))

    def _column(self, part: int, row_group: int) -> pa.Array:
        key = (part, row_group)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        with self._fs.open(self._parts[part], "rb") as f:
            col = pq.ParquetFile(f).read_row_group(row_group, columns=["image"]).column("image")
        array = col.combine_chunks()
        with self._lock:
            self._cache[key] = array
            while len(self._cache) > ROW_GROUP_CACHE:
                self._cache.popitem(last=False)
        return array

    def get(self, image_id: int) -> bytes:
        """The stored bytes of ``image_id`` (``ImageUnavailable`` if the set lacks it)."""
        where = self._locate(int(image_id))
        if where is None:
            raise ImageUnavailable(f"id {image_id} is not in the image set {self.image_set}")
        value = self._column(where.part, where.row_group)[where.row]
        return value.as_py()


def index_ids(index_dir: str, storage_options: dict[str, Any] | None = None) -> np.ndarray:
    """Sorted ids an index holds now (its shards' meta ``id`` columns, deletions removed)."""
    from indexer import storage
    from indexer.manifest import read_manifest

    manifest = read_manifest(index_dir, storage_options)
    parts = []
    for entry in manifest.shards:
        fs, path = storage.url_to_fs(storage.join(index_dir, entry.meta_file), storage_options)
        with fs.open(path, "rb") as f:
            parts.append(pq.read_table(f, columns=["id"]).column("id").to_numpy())
    ids = np.sort(np.concatenate(parts).astype(np.int64, copy=False)) if parts else np.empty(0)
    if manifest.deleted_ids:
        ids = ids[~np.isin(ids, np.asarray(manifest.deleted_ids, dtype=np.int64))]
    return ids.astype(np.int64, copy=False)
