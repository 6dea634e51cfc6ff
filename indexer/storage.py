"""Storage helpers over fsspec: local paths and ``s3://`` URIs behave the same.

Local writes go to a temporary name, are fsynced and renamed with ``os.replace`` (atomic on POSIX),
and the directory is fsynced after the rename (so the new name survives a crash).
Object stores have no rename; there a write is a single ``put`` and the caller writes the file that
names the others (the manifest) last, so a reader never sees a half-written dataset.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from typing import Any

import fsspec
from fsspec.core import url_to_fs as _fsspec_url_to_fs

logger = logging.getLogger(__name__)

_CHUNK = 8 * 1024 * 1024


def url_to_fs(
    uri: str, storage_options: dict[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return the fsspec filesystem for ``uri`` and the path inside it."""
    if not isinstance(uri, str | os.PathLike):
        raise TypeError(f"uri must be a str or path, got {type(uri).__name__}")
    return _fsspec_url_to_fs(os.fspath(uri), **(storage_options or {}))


def normalize(uri: str) -> str:
    """Make a local path absolute (Ray workers may run in another directory); URIs pass through."""
    uri = os.fspath(uri)
    return uri if "://" in uri else os.path.abspath(uri)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True when ``fs`` is the local filesystem."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a local path or URI with ``/``."""
    out = os.fspath(uri).rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def makedirs(uri: str, storage_options: dict[str, Any] | None = None) -> None:
    """Create a directory (a no-op on object stores without directories)."""
    fs, path = url_to_fs(uri, storage_options)
    fs.makedirs(path, exist_ok=True)


def exists(uri: str, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether ``uri`` exists."""
    fs, path = url_to_fs(uri, storage_options)
    return bool(fs.exists(path))


def fsync_file(path: str) -> None:
    """Flush a local file's data to disk (before it is renamed into place)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """Flush a local directory entry (after a rename into it), so the rename survives a crash;
    a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_local(tmp: str, path: str) -> None:
    """``os.replace(tmp, path)`` with the file fsynced before and its directory after."""
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


def write_bytes_atomic(
    uri: str, data: bytes, storage_options: dict[str, Any] | None = None
) -> None:
    """Write ``data`` to ``uri``: temp name + rename locally, a single put on object stores."""
    fs, path = url_to_fs(uri, storage_options)
    if is_local(fs):
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            fsync_dir(parent or ".")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    else:
        fs.pipe_file(path, data)
    logger.debug("wrote %d bytes to %s", len(data), uri)


def read_bytes(uri: str, storage_options: dict[str, Any] | None = None) -> bytes:
    """Read a whole file."""
    fs, path = url_to_fs(uri, storage_options)
    with fs.open(path, "rb") as fh:
        return fh.read()


def write_json_atomic(uri: str, obj: Any, storage_options: dict[str, Any] | None = None) -> None:
    """Write ``obj`` as indented JSON with :func:`write_bytes_atomic`."""
    data = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")
    write_bytes_atomic(uri, data, storage_options)


def read_json(uri: str, storage_options: dict[str, Any] | None = None) -> Any:
    """Read a JSON file; a missing file raises ``FileNotFoundError`` naming it."""
    fs, path = url_to_fs(uri, storage_options)
    if not fs.exists(path):
        raise FileNotFoundError(f"{uri} does not exist")
    try:
        return json.loads(read_bytes(uri, storage_options).decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{uri} is not valid JSON: {exc}") from exc


def staging_dir(output: str) -> str:
    """A fresh sibling of ``output`` the job writes into (``codes.staging-1a2b3c4d``)."""
    return f"{output.rstrip('/')}.staging-{uuid.uuid4().hex[:8]}"


def remove_tree(uri: str, storage_options: dict[str, Any] | None) -> None:
    """Remove a file or a directory tree if it exists."""
    fs, path = url_to_fs(uri, storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def swap_dir(staging: str, output: str, storage_options: dict[str, Any] | None) -> None:
    """Replace the directory ``output`` by the finished ``staging`` directory (a job's output).

    Locally two renames (the old output is moved aside, the new one renamed into place, the old
    one removed): a reader sees the old or the new output, only missing for the instant between
    the renames. Object stores have no rename: the old files are removed and the staged ones
    copied over, after the whole job succeeded (the manifest-last rule of the build does the
    same for indexes)."""
    fs, out_path = url_to_fs(output, storage_options)
    _, stage_path = url_to_fs(staging, storage_options)
    if is_local(fs):
        old = f"{out_path.rstrip('/')}.old-{uuid.uuid4().hex[:8]}"
        had_old = os.path.exists(out_path)
        if had_old:
            os.replace(out_path, old)
        os.replace(stage_path, out_path)
        fsync_dir(os.path.dirname(out_path.rstrip("/")) or ".")
        if had_old:
            fs.rm(old, recursive=True)
        return
    remove_tree(output, storage_options)
    fs.copy(stage_path.rstrip("/") + "/", out_path.rstrip("/") + "/", recursive=True)
    fs.rm(stage_path, recursive=True)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_of(uri: str, storage_options: dict[str, Any] | None = None) -> str:
    """Hex sha256 of the file at ``uri``, read in chunks."""
    fs, path = url_to_fs(uri, storage_options)
    digest = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
