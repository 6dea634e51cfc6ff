"""Changing a built index in place: append new codes and delete ids, one generation at a time.

Every index type appends; ``delete`` is refused (before any work, naming the type) for types
whose adapter cannot remove ids (``hnsw``).

Both rewrite only the shards that own the affected ids (by the same ``shard_of`` hash) into a new
generation directory ``gen-NNNNNN/`` (one past every existing generation; the new manifest still
names the untouched shards' files of older generations), then publish the manifest last. Nothing
is deleted: readers of older generations keep working until they reload, and ``odh gc`` removes
the files no kept generation names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from indexer import storage
from indexer.build import read_code_set
from indexer.build_state import clear_state
from indexer.manifest import (
    Manifest,
    ShardEntry,
    next_generation,
    read_manifest,
    write_manifest,
)
from indexer.shard_io import SHARD_TASK_CPUS, update_shard
from indexer.shards import shard_of

logger = logging.getLogger(__name__)


def _shard_ids(
    index_dir: str, manifest: Manifest, storage_options: dict[str, Any] | None
) -> dict[int, np.ndarray]:
    """The ids each shard holds (from its meta file's ``id`` column)."""
    out = {}
    for entry in manifest.shards:
        fs, path = storage.url_to_fs(storage.join(index_dir, entry.meta_file), storage_options)
        out[entry.shard] = (
            pq.read_table(path, filesystem=fs, columns=["id"]).column("id").to_numpy()
        )
    return out


def _apply(
    index_dir: str,
    manifest: Manifest,
    jobs: dict[int, tuple[pa.Table | None, np.ndarray | None]],
    deleted_ids: tuple[int, ...],
    storage_options: dict[str, Any] | None,
    *,
    task_num_cpus: float,
    faiss_threads: int,
) -> Manifest:
    import ray

    generation = next_generation(index_dir, storage_options)
    task = ray.remote(num_cpus=task_num_cpus)(update_shard)
    by_shard = {e.shard: e for e in manifest.shards}
    refs = {
        s: task.remote(
            index_dir,
            by_shard[s].to_json(),
            add,
            remove,
            manifest.n_bits,
            generation,
            faiss_threads,
            storage_options,
            manifest.index_type,
            manifest.index_params,
        )
        for s, (add, remove) in jobs.items()
    }
    results = dict(zip(refs, ray.get(list(refs.values())), strict=True))
    shards = tuple(
        ShardEntry(
            shard=e.shard,
            file=results[e.shard]["file"],
            sha256=results[e.shard]["sha256"],
            meta_file=results[e.shard]["meta_file"],
            meta_sha256=results[e.shard]["meta_sha256"],
            ntotal=int(results[e.shard]["ntotal"]),
            group=e.group,
        )
        if e.shard in results
        else e
        for e in manifest.shards
    )
    new = replace(manifest, shards=shards, generation=generation, deleted_ids=deleted_ids)
    clear_state(index_dir, storage_options)  # the resume markers describe older shards now
    write_manifest(index_dir, new, storage_options)
    return new


def append(
    codes: str,
    index_dir: str,
    *,
    task_num_cpus: float = SHARD_TASK_CPUS,
    faiss_threads: int = 1,
    storage_options: dict[str, Any] | None = None,
) -> Manifest:
    """Add the codes of an encode job's directory to a built index (Ray must be initialised).

    New ids go to the shard ``shard_of`` names; an id already in the index is a ValueError.
    Returns the new manifest (the next generation, see ``indexer.manifest.next_generation``).
    """
    t0 = time.perf_counter()
    manifest = read_manifest(index_dir, storage_options)
    _, n_bits, table, ids, _ = read_code_set(codes, storage_options)
    if n_bits != manifest.n_bits:
        raise ValueError(f"{codes}: codes have {n_bits} bits, the index {manifest.n_bits}")
    existing = np.concatenate(list(_shard_ids(index_dir, manifest, storage_options).values()))
    clash = ids[np.isin(ids, existing)]
    if clash.size:
        raise ValueError(
            f"{codes}: {clash.size} id(s) are already in the index {index_dir}, e.g. "
            f"{np.sort(clash)[:5].tolist()} (delete them first or give new ids)"
        )
    assignment = shard_of(ids, manifest.n_shards)
    jobs: dict[int, tuple[pa.Table | None, np.ndarray | None]] = {}
    for s in np.unique(assignment).tolist():
        jobs[int(s)] = (table.take(pa.array(np.flatnonzero(assignment == s))), None)
    deleted = tuple(sorted(set(manifest.deleted_ids) - set(ids.tolist())))
    new = _apply(
        index_dir, manifest, jobs, deleted, storage_options,
        task_num_cpus=task_num_cpus, faiss_threads=faiss_threads,
    )  # fmt: skip
    logger.info(
        "append: %d codes into %d shard(s) of %s, generation %d, ntotal %d (%.2f s)",
        len(ids), len(jobs), index_dir, new.generation, new.ntotal, time.perf_counter() - t0,
    )  # fmt: skip
    return new


def check_can_remove(manifest: Manifest, index_dir: str) -> None:
    """ValueError naming the index type when its shards cannot remove ids (``hnsw``)."""
    from indexer.index_types.registry import get_index_type

    if not get_index_type(manifest.index_type).can_remove:
        raise ValueError(
            f"delete: {index_dir} is an index of type {manifest.index_type!r}, which cannot "
            "remove ids (no tombstones either: a search would silently return fewer hits); "
            "rebuild it without these ids, or build it with --index-type ivf or flat"
        )


def read_id_file(path: str, storage_options: dict[str, Any] | None = None) -> np.ndarray:
    """Ids from a text file: integers separated by whitespace or commas (``#`` starts a comment)."""
    text = storage.read_bytes(path, storage_options).decode("utf-8")
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for token in line.split("#", 1)[0].replace(",", " ").split():
            try:
                out.append(int(token))
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: {token!r} is not an integer id") from exc
    return np.asarray(out, dtype=np.int64)


def delete(
    index_dir: str,
    ids: Iterable[int] | np.ndarray,
    *,
    task_num_cpus: float = SHARD_TASK_CPUS,
    faiss_threads: int = 1,
    storage_options: dict[str, Any] | None = None,
) -> Manifest:
    """Remove ``ids`` from their owning shards (``remove_ids``); unknown ids are a ValueError.

    The ids are recorded in the manifest's ``deleted`` list; returns the new manifest.
    """
    t0 = time.perf_counter()
    ids = np.unique(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, np.int64))
    if ids.size == 0:
        raise ValueError("delete: no ids given")
    if ids.min() < 0:
        raise ValueError("delete: ids must be >= 0")
    manifest = read_manifest(index_dir, storage_options)
    check_can_remove(manifest, index_dir)
    held = _shard_ids(index_dir, manifest, storage_options)
    assignment = shard_of(ids, manifest.n_shards)
    jobs: dict[int, tuple[pa.Table | None, np.ndarray | None]] = {}
    unknown: list[np.ndarray] = []
    for s in np.unique(assignment).tolist():
        mine = ids[assignment == s]
        present = np.isin(mine, held[int(s)])
        unknown.append(mine[~present])
        jobs[int(s)] = (None, mine)
    missing = np.sort(np.concatenate(unknown))
    if missing.size:
        raise ValueError(
            f"delete: {missing.size} id(s) are not in the index {index_dir}, "
            f"e.g. {missing[:5].tolist()}"
        )
    deleted = tuple(sorted(set(manifest.deleted_ids) | set(ids.tolist())))
    new = _apply(
        index_dir, manifest, jobs, deleted, storage_options,
        task_num_cpus=task_num_cpus, faiss_threads=faiss_threads,
    )  # fmt: skip
    logger.info(
        "delete: %d ids from %d shard(s) of %s, generation %d, ntotal %d (%.2f s)",
        len(ids), len(jobs), index_dir, new.generation, new.ntotal, time.perf_counter() - t0,
    )  # fmt: skip
    return new
