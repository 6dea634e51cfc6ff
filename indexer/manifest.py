"""The index manifest: ``manifest.json``, written last, naming every file of an index generation.

Generations: every build, append or delete writes its new files under a new generation directory
``gen-NNNNNN/`` (never into a generation a searcher may be serving), then a copy of its manifest
``gen-NNNNNN/manifest.json``, and then — last, atomically — the pointer ``manifest.json`` at the
top of the index directory. Generation numbers only increase (:func:`next_generation`;
:func:`write_manifest` refuses to move the pointer backwards). A manifest may still name files of
older generations (an append rewrites only the shards it touches) or top-level files of a
format-1 index written before generation directories existed; both load unchanged.

The manifest digest (sha256 of its bytes) identifies a generation exactly: searchers report it
and the ingress never merges answers of different digests. Every file path a manifest names is
confined to the index directory (:func:`check_relative_path`): no absolute paths, no ``..``, no
URL schemes.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from indexer import storage
from odh_core import formats
from odh_core.formats import json_path
from odh_core.packing import check_n_bits

logger = logging.getLogger(__name__)

#: 2: the ``index`` block (type, params, search defaults); a version-1 manifest loads as ``ivf``.
FORMAT_VERSION = 2
MANIFEST_FILE = "manifest.json"
_GEN_DIR_RE = re.compile(r"^gen-(\d{6})$")


def gen_dir(generation: int) -> str:
    """The directory of generation ``generation`` inside an index: ``gen-000007``."""
    if generation < 1:
        raise ValueError(f"generation must be >= 1, got {generation}")
    return f"gen-{generation:06d}"


def check_relative_path(path: str, field_name: str = "path") -> str:
    """``path`` if it is a plain relative path inside the index directory; otherwise ValueError.

    Refused: empty names, absolute paths, ``..`` or ``.`` components, backslashes, ``~`` and any
    URL scheme (``s3://``, ``http://``, ``file:``) — a manifest can only name files under its
    own directory.
    """
    if not isinstance(path, str) or not path:
        raise ValueError(f"{field_name}: must be a non-empty relative path, got {path!r}")
    if ":" in path or "\\" in path or path.startswith(("/", "~")):
        raise ValueError(
            f"{field_name}: {path!r} is not a relative path inside the index directory "
            "(absolute paths and URL schemes are refused)"
        )
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(
            f"{field_name}: {path!r} leaves or obscures the index directory ('..', '.' and empty "
            "components are refused)"
        )
    return path


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

    def __post_init__(self) -> None:
        check_relative_path(self.file, f"shard {self.shard} file")
        check_relative_path(self.meta_file, f"shard {self.shard} meta_file")
        if self.ntotal < 0:
            raise ValueError(f"shard {self.shard} ntotal must be >= 0, got {self.ntotal}")

    def to_json(self) -> dict[str, Any]:
        return formats.to_json(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any], source: str | None = None) -> ShardEntry:
        return formats.from_json(cls, obj, source)


@dataclass(frozen=True)
class Manifest:
    """An index generation: code length, index type, coarse quantizer, encoder provenance, shards.

    JSON layout (format version 2): ``index: {type, params, search_defaults}``, ``quantizer:
    {file, sha256}`` (``null`` for types without one: ``hnsw``, ``flat``), ``encoder:
    {checkpoint, sha256}``, ``build`` (the build config), ``deleted: {ids, count}`` and the
    derived ``ntotal``; read and written by :mod:`odh_core.formats` (unknown fields ignored,
    version checked). A format-1 manifest (no ``index`` block) loads as an ``ivf`` index with no
    search defaults. ``nlist`` is 1 for types without lists. ``search_defaults`` are the search
    parameters a request that omits them gets (e.g. ``{"nprobe": 8}``, chosen at build time).
    ``auto_choice`` (``index.auto_choice``, ``null`` unless built with ``--index-type auto``): the
    measured candidates and the reason for the type (``indexer.build_auto.AutoChoice``); manifests
    without it load unchanged.
    """

    n_bits: int
    nlist: int
    quantizer_file: str | None = field(metadata=json_path("quantizer", "file"))
    quantizer_sha256: str | None = field(metadata=json_path("quantizer", "sha256"))
    shards: tuple[ShardEntry, ...]
    encoder_checkpoint: str | None = field(
        default=None, metadata=json_path("encoder", "checkpoint")
    )
    encoder_sha256: str | None = field(default=None, metadata=json_path("encoder", "sha256"))
    generation: int = 1
    metric: str = "hamming"
    build_config: dict[str, Any] = field(default_factory=dict, metadata=json_path("build"))
    deleted_ids: tuple[int, ...] = field(default=(), metadata=json_path("deleted", "ids"))
    index_type: str = field(default="ivf", metadata=json_path("index", "type"))
    index_params: dict[str, Any] = field(
        default_factory=dict, metadata=json_path("index", "params")
    )
    search_defaults: dict[str, Any] = field(
        default_factory=dict, metadata=json_path("index", "search_defaults")
    )
    auto_choice: dict[str, Any] | None = field(
        default=None, metadata=json_path("index", "auto_choice")
    )
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
        if self.generation < 1:
            raise ValueError(f"manifest generation must be >= 1, got {self.generation}")
        if not self.shards:
            raise ValueError("manifest shards: the index has no shards (an empty shard list)")
        from indexer.index_types.registry import list_index_types

        if self.index_type not in list_index_types():
            raise ValueError(
                f"manifest index.type must be one of {list_index_types()}, got {self.index_type!r}"
            )
        if self.quantizer_file is not None:
            check_relative_path(self.quantizer_file, "manifest quantizer.file")
        elif self.index_type == "ivf":
            raise ValueError("manifest quantizer.file: an ivf index needs its quantizer file")
        numbers = [s.shard for s in self.shards]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"manifest shards: shard numbers repeat: {sorted(numbers)}")

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
        out = formats.to_json(self)
        if self.auto_choice is None:  # written only by auto builds: other manifests unchanged
            out["index"].pop("auto_choice", None)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any], source: str = MANIFEST_FILE) -> Manifest:
        if isinstance(obj, dict) and obj.get("format_version") == 1:
            # format 1 predates index types: every such index is an ivf one
            obj = {**obj, "format_version": FORMAT_VERSION}
            obj.pop("index", None)
        return formats.from_json(cls, obj, source)


class LoadedManifest(NamedTuple):
    """A manifest with the sha256 of the exact bytes it was read from (its digest)."""

    manifest: Manifest
    digest: str


def manifest_bytes(manifest: Manifest) -> bytes:
    """The canonical bytes of ``manifest`` (what :func:`write_manifest` writes)."""
    return (json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n").encode("utf-8")


def _parse(uri: str, data: bytes) -> Manifest:
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{uri} is not valid JSON: {exc}") from exc
    try:
        return Manifest.from_json(obj, source=uri)
    except ValueError as exc:
        if uri in str(exc):
            raise
        raise ValueError(f"{uri}: {exc}") from None


def load_manifest(
    index_dir: str,
    storage_options: dict[str, Any] | None = None,
    *,
    generation: int | None = None,
    digest: str | None = None,
) -> LoadedManifest:
    """The current manifest of ``index_dir`` (the pointer ``manifest.json``) with its digest, or —
    with ``generation`` — that generation's manifest (the pointer if it is that generation, else
    the copy in ``gen-NNNNNN/manifest.json``). With ``digest``, a manifest with other bytes is a
    :class:`StaleGeneration` error: never serve something else under the same name.
    """
    uri = storage.join(index_dir, MANIFEST_FILE)
    try:
        data = storage.read_bytes(uri, storage_options)
    except FileNotFoundError as exc:
        if generation is None:
            raise FileNotFoundError(
                f"{uri} not found: {index_dir} is not a (completely built) index directory"
            ) from exc
        data = b""
    if data:
        manifest = _parse(uri, data)
    if generation is not None and (not data or manifest.generation != generation):
        uri = storage.join(index_dir, gen_dir(generation), MANIFEST_FILE)
        try:
            data = storage.read_bytes(uri, storage_options)
        except FileNotFoundError as exc:
            raise StaleGeneration(
                f"{index_dir}: generation {generation} is no longer available (no {uri})"
            ) from exc
        manifest = _parse(uri, data)
        if manifest.generation != generation:
            raise StaleGeneration(f"{uri} says generation {manifest.generation}, not {generation}")
    got = storage.sha256_bytes(data)
    if digest is not None and got != digest:
        raise StaleGeneration(
            f"{uri}: generation {manifest.generation} has digest {got[:12]}…, expected "
            f"{digest[:12]}… (the index was rewritten under the same generation)"
        )
    return LoadedManifest(manifest, got)


class StaleGeneration(ValueError):
    """The generation (or manifest digest) asked for is not the one on storage."""


def read_manifest(index_dir: str, storage_options: dict[str, Any] | None = None) -> Manifest:
    """Read ``index_dir/manifest.json``; a missing file or wrong format_version raises clearly."""
    return load_manifest(index_dir, storage_options).manifest


def list_generations(index_dir: str, storage_options: dict[str, Any] | None = None) -> list[int]:
    """Generation numbers that have a ``gen-NNNNNN/`` directory in ``index_dir``, ascending."""
    fs, root = storage.url_to_fs(index_dir, storage_options)
    if not fs.exists(root):
        return []
    out = []
    for path in fs.ls(root, detail=False):
        m = _GEN_DIR_RE.match(str(path).rstrip("/").rsplit("/", 1)[-1])
        if m:
            out.append(int(m.group(1)))
    return sorted(out)


def current_generation(index_dir: str, storage_options: dict[str, Any] | None = None) -> int:
    """The generation the pointer names (0 when ``index_dir`` has no manifest yet)."""
    try:
        return read_manifest(index_dir, storage_options).generation
    except FileNotFoundError:
        return 0


def next_generation(index_dir: str, storage_options: dict[str, Any] | None = None) -> int:
    """The number a new build or update of ``index_dir`` writes: one past both the pointer and
    every ``gen-NNNNNN/`` directory (so an abandoned, never-published generation is not reused)."""
    gens = list_generations(index_dir, storage_options)
    return max([current_generation(index_dir, storage_options), *gens]) + 1


def write_manifest(
    index_dir: str, manifest: Manifest, storage_options: dict[str, Any] | None = None
) -> str:
    """Publish ``manifest``: its copy ``gen-NNNNNN/manifest.json`` first, then the pointer
    ``manifest.json`` atomically (temp + fsync + rename locally; one put, after every data file,
    on object stores). Refuses a generation not above the current pointer's. Returns the
    pointer's URI."""
    current = current_generation(index_dir, storage_options)
    if manifest.generation <= current:
        raise ValueError(
            f"{index_dir}: cannot publish generation {manifest.generation}; the manifest already "
            f"names generation {current} (generations only increase)"
        )
    data = manifest_bytes(manifest)
    storage.write_bytes_atomic(
        storage.join(index_dir, gen_dir(manifest.generation), MANIFEST_FILE), data, storage_options
    )
    uri = storage.join(index_dir, MANIFEST_FILE)
    storage.write_bytes_atomic(uri, data, storage_options)
    logger.info(
        "wrote %s: generation %d (digest %s), %d shards, ntotal %d",
        uri,
        manifest.generation,
        storage.sha256_bytes(data)[:12],
        manifest.n_shards,
        manifest.ntotal,
    )
    return uri
