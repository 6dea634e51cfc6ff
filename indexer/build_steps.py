"""Steps of ``indexer.build.build`` kept apart from it: waiting for the shard tasks, the measured
search defaults, and whether a rerun produced exactly the published index."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from typing import Any

import numpy as np

from indexer.manifest import Manifest, read_manifest
from indexer.shard_io import FAIL_ENV

logger = logging.getLogger(__name__)

__all__ = ["fail_shard", "run_tasks", "same_index", "with_search_defaults"]


def same_index(
    output: str, new: Manifest, current_generation: int, storage_options: dict[str, Any] | None
) -> bool:
    """Whether the published manifest already names exactly ``new``'s files (a rerun that reused
    everything): then nothing is published and the generation stays."""
    try:
        current = read_manifest(output, storage_options)
    except (OSError, ValueError):
        return False
    # auto_choice holds timings: a rerun that picks the same index is the same index
    return current.generation == current_generation and replace(
        new, generation=current.generation, deleted_ids=current.deleted_ids, auto_choice=None
    ) == replace(current, deleted_ids=current.deleted_ids, auto_choice=None)


def fail_shard() -> int | None:
    value = os.environ.get(FAIL_ENV)
    if not value:
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"${FAIL_ENV} must be a shard number, got {value!r}") from exc


def run_tasks(refs: dict[int, Any], n_total: int, n_reused: int) -> dict[int, dict[str, Any]]:
    """Wait for every shard task (so finished shards keep their markers), with a progress bar;
    raise the first failure afterwards."""
    import ray

    from odh_core.progress import progress_bar

    results: dict[int, dict[str, Any]] = {}
    errors: list[tuple[int, BaseException]] = []
    pending = {ref: s for s, ref in refs.items()}
    with progress_bar(n_total, initial=n_reused, desc="build shards", unit="shard") as bar:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                s = pending.pop(ref)
                try:
                    results[s] = ray.get(ref)
                except Exception as exc:
                    errors.append((s, exc))
                bar.update(1)
    if errors:
        s, exc = errors[0]
        raise RuntimeError(
            f"build: {len(errors)} shard task(s) failed (first: shard {s}: {exc}); "
            "rerun the same command to finish only the missing shards"
        ) from exc
    return results


def with_search_defaults(
    manifest: Manifest,
    output: str,
    codes: np.ndarray,
    target_recall: float,
    seed: int,
    storage_options: dict[str, Any] | None,
) -> Manifest:
    """``manifest`` with the measured search default for ``target_recall`` (see
    ``indexer.search.recommend_search_defaults``) and the recall it reached in ``build``."""
    from indexer.search import open_index, recommend_search_defaults

    if target_recall <= 0:
        return manifest
    t0 = time.perf_counter()
    index = open_index(output, manifest=manifest, storage_options=storage_options)
    found, recall = recommend_search_defaults(index, codes, target_recall=target_recall, seed=seed)
    del index
    if not found:
        return manifest
    logger.info(
        "build: search default %s reaches recall@10 %.3f on 200 indexed codes (%.2f s)",
        found, recall, time.perf_counter() - t0,
    )  # fmt: skip
    build_config = {**manifest.build_config, "search_default_recall_at_10": round(recall, 4)}
    return replace(manifest, search_defaults=found, build_config=build_config)
