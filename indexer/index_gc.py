"""Garbage collection of old index generations (``odh gc``).

A build or update never deletes anything (a searcher may still serve an older generation until it
reloads); this removes the files that no *kept* generation names. Kept: the current generation
(the one ``manifest.json`` names), the ``keep - 1`` newest generations before it that still have
their manifest copy ``gen-NNNNNN/manifest.json``, and every generation newer than the current one
(a build in progress, never published). A file is removed only when no kept manifest names it —
an append's manifest names untouched shards of older generations, and those stay — and no
resumable build state (``_build/``) would reuse it.
Format-1 files at the top level of the index (``shard-00000[-g00002].faissbin``,
``meta-…parquet``, ``quantizer.faissbin``) are treated the same way.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from indexer import storage
from indexer.manifest import (
    Manifest,
    gen_dir,
    list_generations,
    load_manifest,
)

logger = logging.getLogger(__name__)

_LEGACY_RE = re.compile(r"^((shard|meta)-\d{5}(-g\d{5})?\.(faissbin|parquet)|quantizer\.faissbin)$")


@dataclass(frozen=True)
class GcReport:
    """What ``collect_garbage`` removed (or, in a dry run, would remove)."""

    index: str
    current: int
    kept: tuple[int, ...]
    removed_generations: tuple[int, ...]
    files: tuple[str, ...]
    bytes: int
    dry_run: bool


def _files_of(manifest: Manifest) -> set[str]:
    out = {manifest.quantizer_file}
    for e in manifest.shards:
        out |= {e.file, e.meta_file}
    return out


def _resumable_files(index_dir: str, storage_options: dict[str, Any] | None) -> set[str]:
    """Files a rerun of the last build would reuse (``_build/`` state and shard markers): kept,
    so gc never races a resumable build out of its quantizer or finished shards."""
    from indexer.build_state import STATE_DIR, read_state

    out: set[str] = set()
    state = read_state(index_dir, storage_options)
    if state is not None:
        out.add(state.quantizer_file)
    fs, root = storage.url_to_fs(storage.join(index_dir, STATE_DIR), storage_options)
    if not fs.exists(root):
        return out
    for path in fs.ls(root, detail=False):
        name = str(path).rstrip("/").rsplit("/", 1)[-1]
        if not name.startswith("shard-"):
            continue
        try:
            marker = storage.read_json(storage.join(index_dir, STATE_DIR, name), storage_options)
        except (OSError, ValueError):
            continue
        if isinstance(marker, dict):
            out |= {str(marker.get("file", "")), str(marker.get("meta_file", ""))}
    return out


def collect_garbage(
    index_dir: str,
    keep: int = 2,
    *,
    dry_run: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> GcReport:
    """Remove files of generations older than the ``keep`` newest published ones (see the
    module docstring); ``dry_run`` (the default) only reports them."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep must be an integer >= 1 (the current generation), got {keep!r}")
    current = load_manifest(index_dir, storage_options).manifest  # no manifest: refuse
    gens = list_generations(index_dir, storage_options)
    older = sorted((g for g in gens if g < current.generation), reverse=True)
    kept_manifests = [current]
    kept = [current.generation]
    for g in older:
        if len(kept) >= keep:
            break
        try:
            m = load_manifest(index_dir, storage_options, generation=g).manifest
        except (OSError, ValueError):
            continue  # an abandoned build: nothing serves it
        kept_manifests.append(m)
        kept.append(g)
    kept += [g for g in gens if g > current.generation]  # unpublished: a build may be running
    wanted: set[str] = set()
    for m in kept_manifests:
        wanted |= _files_of(m)
    wanted |= _resumable_files(index_dir, storage_options)
    fs, root = storage.url_to_fs(index_dir, storage_options)
    root = root.rstrip("/")
    doomed: list[tuple[str, int]] = []
    removed_gens: list[int] = []
    for g in gens:
        if g in kept:
            continue
        sub = f"{root}/{gen_dir(g)}"
        all_gone = True
        for path, info in sorted(fs.find(sub, detail=True).items()):
            rel = path[len(root) + 1 :]
            if rel in wanted:
                all_gone = False
            else:
                doomed.append((path, int(info.get("size") or 0)))
        if all_gone:
            removed_gens.append(g)
    for info in sorted(fs.ls(root, detail=True), key=lambda i: str(i["name"])):
        path = str(info["name"])
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if info.get("type") == "file" and _LEGACY_RE.match(name) and name not in wanted:
            doomed.append((path, int(info.get("size") or 0)))
    total = sum(size for _, size in doomed)
    if not dry_run:
        for path, _ in doomed:
            logger.info("gc: removing %s", path)
            fs.rm(path)
        for g in removed_gens:
            sub = f"{root}/{gen_dir(g)}"
            if fs.exists(sub) and not fs.find(sub):
                fs.rm(sub, recursive=True)
    logger.info(
        "gc %s: current generation %d, kept %s, %s %d files (%d bytes) of generations %s",
        index_dir, current.generation, sorted(kept), "would remove" if dry_run else "removed",
        len(doomed), total, removed_gens,
    )  # fmt: skip
    return GcReport(
        index=index_dir,
        current=current.generation,
        kept=tuple(sorted(kept)),
        removed_generations=tuple(removed_gens),
        files=tuple(p for p, _ in doomed),
        bytes=total,
        dry_run=dry_run,
    )
