"""The index manifest: ``manifest.json``, written last, naming every file of an index generation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

from indexer import storage
from odh_core import formats
from odh_core.formats import json_path
from odh_core.packing import check_n_bits

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class ShardEntry:
    """One shard: its FAISS file and meta Parquet file, checksums, size and searcher group."""

    shard: int
    file: str
    sha256: str
    meta_file: str
    meta_sha256: str
    ntotal: int
    group: int = 0

    __json_source__: ClassVar[str] = f"{MANIFEST_FILE} shard"

    def to_json(self) -> dict[str, Any]:
        return formats.to_json(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any], source: str | None = None) -> ShardEntry:
        return formats.from_json(cls, obj, source)


@dataclass(frozen=True)
class Manifest:
    """An index generation: code length, coarse quantizer, encoder provenance and shards.

    JSON layout (format version 1): ``quantizer: {file, sha256}``, ``encoder: {checkpoint,
    sha256}``, ``build`` (the build config), ``deleted: {ids, count}`` and the derived ``ntotal``;
    read and written by :mod:`odh_core.formats` (unknown fields ignored, version checked).
    """

    n_bits: int
    nlist: int
    quantizer_file: str = field(metadata=json_path("quantizer", "file"))
    quantizer_sha256: str = field(metadata=json_path("quantizer", "sha256"))
    shards: tuple[ShardEntry, ...]
    encoder_checkpoint: str | None = field(
        default=None, metadata=json_path("encoder", "checkpoint")
    )
    encoder_sha256: str | None = field(default=None, metadata=json_path("encoder", "sha256"))
    generation: int = 1
    metric: str = "hamming"
    build_config: dict[str, Any] = field(default_factory=dict, metadata=json_path("build"))
    deleted_ids: tuple[int, ...] = field(default=(), metadata=json_path("deleted", "ids"))
    format_version: int = FORMAT_VERSION

    __json_source__: ClassVar[str] = MANIFEST_FILE
    __json_derived__: ClassVar[dict[str, str]] = {
        "ntotal": "ntotal",
        "deleted.count": "deleted_count",
    }

    def __post_init__(self) -> None:
        check_n_bits(self.n_bits, "manifest n_bits")
        if self.nlist < 1:
            raise ValueError(f"manifest nlist must be >= 1, got {self.nlist}")
        if self.metric != "hamming":
            raise ValueError(f"manifest metric must be 'hamming', got {self.metric!r}")

    @property
    def ntotal(self) -> int:
        return sum(s.ntotal for s in self.shards)

    @property
    def deleted_count(self) -> int:
        """How many ids were removed by ``odh build --delete`` since the first generation."""
        return len(self.deleted_ids)

    @property
    def n_shards(self) -> int:
        return len(self.shards)

    def to_json(self) -> dict[str, Any]:
        return formats.to_json(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any], source: str = MANIFEST_FILE) -> Manifest:
        return formats.from_json(cls, obj, source)


def read_manifest(index_dir: str, storage_options: dict[str, Any] | None = None) -> Manifest:
    """Read ``index_dir/manifest.json``; a missing file or wrong format_version raises clearly."""
    uri = storage.join(index_dir, MANIFEST_FILE)
    try:
        obj = storage.read_json(uri, storage_options)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{uri} not found: {index_dir} is not a (completely built) index directory"
        ) from exc
    return Manifest.from_json(obj, source=uri)


def write_manifest(
    index_dir: str, manifest: Manifest, storage_options: dict[str, Any] | None = None
) -> str:
    """Write ``manifest.json`` atomically; returns its URI."""
    uri = storage.join(index_dir, MANIFEST_FILE)
    storage.write_json_atomic(uri, manifest.to_json(), storage_options)
    logger.info(
        "wrote %s: generation %d, %d shards, ntotal %d",
        uri,
        manifest.generation,
        manifest.n_shards,
        manifest.ntotal,
    )
    return uri
