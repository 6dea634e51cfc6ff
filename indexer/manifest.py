"""The index manifest: ``manifest.json``, written last, naming every file of an index generation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from indexer import storage

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

    def to_json(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "file": self.file,
            "sha256": self.sha256,
            "meta_file": self.meta_file,
            "meta_sha256": self.meta_sha256,
            "ntotal": self.ntotal,
            "group": self.group,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ShardEntry:
        return cls(
            shard=int(obj["shard"]),
            file=str(obj["file"]),
            sha256=str(obj["sha256"]),
            meta_file=str(obj["meta_file"]),
            meta_sha256=str(obj["meta_sha256"]),
            ntotal=int(obj["ntotal"]),
            group=int(obj.get("group", 0)),
        )


@dataclass(frozen=True)
class Manifest:
    """An index generation: code length, coarse quantizer, encoder provenance and shards."""

    n_bits: int
    nlist: int
    quantizer_file: str
    quantizer_sha256: str
    shards: tuple[ShardEntry, ...]
    encoder_checkpoint: str | None = None
    encoder_sha256: str | None = None
    generation: int = 1
    metric: str = "hamming"
    build_config: dict[str, Any] = field(default_factory=dict)
    deleted_ids: tuple[int, ...] = ()
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.n_bits <= 0 or self.n_bits % 8:
            raise ValueError(f"n_bits must be a positive multiple of 8, got {self.n_bits}")
        if self.nlist < 1:
            raise ValueError(f"nlist must be >= 1, got {self.nlist}")
        if self.metric != "hamming":
            raise ValueError(f"metric must be 'hamming', got {self.metric!r}")

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

    @property
    def groups(self) -> dict[int, tuple[ShardEntry, ...]]:
        """Shards by searcher group."""
        out: dict[int, list[ShardEntry]] = {}
        for s in self.shards:
            out.setdefault(s.group, []).append(s)
        return {g: tuple(v) for g, v in sorted(out.items())}

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "generation": self.generation,
            "n_bits": self.n_bits,
            "nlist": self.nlist,
            "metric": self.metric,
            "ntotal": self.ntotal,
            "quantizer": {"file": self.quantizer_file, "sha256": self.quantizer_sha256},
            "encoder": {"checkpoint": self.encoder_checkpoint, "sha256": self.encoder_sha256},
            "shards": [s.to_json() for s in self.shards],
            "build": dict(self.build_config),
            "deleted": {"count": self.deleted_count, "ids": list(self.deleted_ids)},
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any], source: str = MANIFEST_FILE) -> Manifest:
        if not isinstance(obj, dict):
            raise ValueError(f"{source}: expected a JSON object")
        version = obj.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{source}: format_version {version!r} is not supported (expected {FORMAT_VERSION})"
            )
        try:
            encoder = obj.get("encoder") or {}
            return cls(
                n_bits=int(obj["n_bits"]),
                nlist=int(obj["nlist"]),
                quantizer_file=str(obj["quantizer"]["file"]),
                quantizer_sha256=str(obj["quantizer"]["sha256"]),
                shards=tuple(ShardEntry.from_json(s) for s in obj["shards"]),
                encoder_checkpoint=encoder.get("checkpoint"),
                encoder_sha256=encoder.get("sha256"),
                generation=int(obj.get("generation", 1)),
                metric=str(obj.get("metric", "hamming")),
                build_config=dict(obj.get("build", {})),
                deleted_ids=tuple(int(i) for i in (obj.get("deleted") or {}).get("ids", [])),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{source}: bad or missing field: {exc!r}") from exc


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
