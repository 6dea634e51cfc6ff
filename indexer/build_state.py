"""Resumable builds: ``_build/state.json`` (the build key and the trained quantizer's sha256) and
one ``_build/shard-NNNNN.json`` completion marker per finished shard.

The build key is a sha256 over the input codes (ids and code bytes) and every configuration field
that changes the output. A rerun with the same key reuses the quantizer and every shard whose
marker matches the key and whose files still have the recorded sha256; everything else is built.
Both files are :class:`BuildState` / :class:`ShardMarker` dataclasses on the shared serialiser
(:mod:`odh_core.formats`); an unreadable or malformed one counts as absent (the work is redone).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from indexer import storage
from odh_core import formats

logger = logging.getLogger(__name__)

STATE_DIR = "_build"
STATE_FILE = "state.json"


@dataclass(frozen=True)
class BuildState:
    """``_build/state.json``: the build key, the quantizer trained for it (its file, relative to
    the index directory, and sha256) and the generation that build writes."""

    key: str
    quantizer_sha256: str
    quantizer_file: str = "quantizer.faissbin"
    generation: int = 1

    __json_source__: ClassVar[str] = f"{STATE_DIR}/{STATE_FILE}"


@dataclass(frozen=True)
class ShardMarker:
    """``_build/shard-NNNNN.json``: shard ``shard`` was finished by the build with ``key``."""

    key: str
    shard: int
    file: str
    sha256: str
    meta_file: str
    meta_sha256: str
    ntotal: int
    bytes: int = 0
    meta_bytes: int = 0

    __json_source__: ClassVar[str] = f"{STATE_DIR}/shard marker"


_MARKER_FIELDS = tuple(f.name for f in dataclasses.fields(ShardMarker))


def build_key(ids: np.ndarray, codes: np.ndarray, n_bits: int, config: dict[str, Any]) -> str:
    """sha256 of the inputs and output-relevant config of a build."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"n_bits": n_bits, **config}, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(codes, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def _state_uri(output: str) -> str:
    return storage.join(output, STATE_DIR, STATE_FILE)


def marker_uri(output: str, shard: int) -> str:
    return storage.join(output, STATE_DIR, f"shard-{shard:05d}.json")


def read_state(output: str, storage_options: dict[str, Any] | None) -> BuildState | None:
    """The saved state, or None when absent or unreadable."""
    uri = _state_uri(output)
    try:
        return formats.from_json(BuildState, storage.read_json(uri, storage_options), uri)
    except (FileNotFoundError, ValueError):
        return None


def write_state(
    output: str, state: BuildState | dict[str, Any], storage_options: dict[str, Any] | None
) -> None:
    """Write ``_build/state.json`` (``state``: a BuildState or its fields as a dict)."""
    if not isinstance(state, BuildState):
        state = formats.from_json(BuildState, state, "write_state")
    storage.write_json_atomic(_state_uri(output), formats.to_json(state), storage_options)


def write_marker(
    output: str,
    shard: int,
    key: str,
    entry: dict[str, Any],
    storage_options: dict[str, Any] | None,
) -> None:
    """Record a finished shard (called by the shard task after its files are written);
    ``entry`` holds the ShardMarker fields (extra keys are not recorded)."""
    fields = {k: v for k, v in entry.items() if k in _MARKER_FIELDS}
    marker = formats.from_json(ShardMarker, {**fields, "key": key, "shard": shard}, "write_marker")
    storage.write_json_atomic(marker_uri(output, shard), formats.to_json(marker), storage_options)


def _file_ok(uri: str, sha256: str, storage_options: dict[str, Any] | None) -> bool:
    try:
        return storage.exists(uri, storage_options) and (
            storage.sha256_of(uri, storage_options) == sha256
        )
    except OSError:
        return False


def finished_shard(
    output: str, shard: int, key: str, storage_options: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The marker's entry when shard ``shard`` was finished by a build with ``key`` and its
    files are intact; otherwise None."""
    uri = marker_uri(output, shard)
    try:
        marker = formats.from_json(ShardMarker, storage.read_json(uri, storage_options), uri)
    except (FileNotFoundError, ValueError):
        return None
    if marker.key != key or marker.shard != shard:
        return None
    files = (
        (storage.join(output, marker.file), marker.sha256),
        (storage.join(output, marker.meta_file), marker.meta_sha256),
    )
    if not all(_file_ok(uri, sha, storage_options) for uri, sha in files):
        logger.warning("build: shard %d marker found but its files changed; rebuilding", shard)
        return None
    return {k: v for k, v in formats.to_json(marker).items() if k != "key"}


def quantizer_ok(
    output: str, key: str, storage_options: dict[str, Any] | None
) -> BuildState | None:
    """The saved state when it matches ``key`` and its quantizer file is intact."""
    state = read_state(output, storage_options)
    if state is None or state.key != key:
        return None
    if _file_ok(
        storage.join(output, state.quantizer_file), state.quantizer_sha256, storage_options
    ):
        return state
    return None


def clear_state(output: str, storage_options: dict[str, Any] | None) -> None:
    """Remove ``_build/`` (after an update changed the shards the markers describe)."""
    fs, path = storage.url_to_fs(storage.join(output, STATE_DIR), storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=True)
