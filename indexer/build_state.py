"""Resumable builds: ``_build/state.json`` (the build key and the trained quantizer's sha256) and
one ``_build/shard-NNNNN.json`` completion marker per finished shard.

The build key is a sha256 over the input codes (ids and code bytes) and every configuration field
that changes the output. A rerun with the same key reuses the quantizer and every shard whose
marker matches the key and whose files still have the recorded sha256; everything else is built.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import numpy as np

from indexer import storage

logger = logging.getLogger(__name__)

STATE_DIR = "_build"
STATE_FILE = "state.json"


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


def read_state(output: str, storage_options: dict[str, Any] | None) -> dict[str, Any] | None:
    """The saved state, or None when absent or unreadable."""
    try:
        state = storage.read_json(_state_uri(output), storage_options)
    except (FileNotFoundError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def write_state(output: str, state: dict[str, Any], storage_options: dict[str, Any] | None) -> None:
    storage.write_json_atomic(_state_uri(output), state, storage_options)


def write_marker(
    output: str,
    shard: int,
    key: str,
    entry: dict[str, Any],
    storage_options: dict[str, Any] | None,
) -> None:
    """Record a finished shard (called by the shard task after its files are written)."""
    storage.write_json_atomic(marker_uri(output, shard), {"key": key, **entry}, storage_options)


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
    try:
        marker = storage.read_json(marker_uri(output, shard), storage_options)
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("key") != key:
        return None
    try:
        files = (
            (storage.join(output, marker["file"]), marker["sha256"]),
            (storage.join(output, marker["meta_file"]), marker["meta_sha256"]),
        )
    except KeyError:
        return None
    if not all(_file_ok(uri, sha, storage_options) for uri, sha in files):
        logger.warning("build: shard %d marker found but its files changed; rebuilding", shard)
        return None
    return {k: v for k, v in marker.items() if k != "key"}


def quantizer_ok(
    output: str, file: str, key: str, storage_options: dict[str, Any] | None
) -> str | None:
    """sha256 of the saved quantizer when the state matches ``key`` and the file is intact."""
    state = read_state(output, storage_options)
    if state is None or state.get("key") != key:
        return None
    sha = state.get("quantizer_sha256")
    if isinstance(sha, str) and _file_ok(storage.join(output, file), sha, storage_options):
        return sha
    return None


def clear_state(output: str, storage_options: dict[str, Any] | None) -> None:
    """Remove ``_build/`` (after an update changed the shards the markers describe)."""
    fs, path = storage.url_to_fs(storage.join(output, STATE_DIR), storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=True)
