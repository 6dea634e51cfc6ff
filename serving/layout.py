"""Which shards each searcher group holds (the serving layout of one index generation).

Two placements:

* ``split`` (default) — shard numbers are cut into ``groups`` contiguous, balanced groups.
* ``ingress`` — one group of every shard, held by the ingress replica itself: no Serve hop for
  a search (one node; the fastest layout while the index fits one machine).
* ``node`` — the manifest decides: every ``ShardEntry.group`` is one searcher group (the shards a
  node holds are searched together in one replica with FAISS threads). The number of groups is
  then the number of distinct ``group`` values.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

logger = logging.getLogger(__name__)

PLACEMENTS: tuple[str, ...] = ("split", "node", "ingress")


class GroupSpec(NamedTuple):
    """What one searcher group serves: an index generation, the shard numbers it holds and the
    manifest digest (sha256 of the manifest's bytes; ``None``: whatever that generation's
    manifest is).

    It travels with every search call, so a replica always answers from the generation the
    ingress asked for (and loads exactly that manifest on demand after a restart — never a newer
    one under the old number)."""

    index_dir: str
    shards: tuple[int, ...]
    generation: int
    digest: str | None = None


def split_groups(n_shards: int, groups: int) -> list[list[int]]:
    """Split shard numbers ``0..n_shards-1`` into ``min(groups, n_shards)`` contiguous, balanced
    groups."""
    if n_shards < 1:
        raise ValueError(f"index has no shards (n_shards={n_shards})")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    groups = min(groups, n_shards)
    base, extra = divmod(n_shards, groups)
    out, start = [], 0
    for g in range(groups):
        size = base + (1 if g < extra else 0)
        out.append(list(range(start, start + size)))
        start += size
    return out


def plan_groups(manifest: Any, groups: int, placement: str = "split") -> list[list[int]]:
    """Shard numbers per searcher group for ``manifest`` (an ``indexer.manifest.Manifest``)."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {list(PLACEMENTS)}, got {placement!r}")
    numbers = sorted(int(e.shard) for e in manifest.shards)
    if placement == "ingress":
        return [numbers]
    if placement == "node":
        by_group: dict[int, list[int]] = {}
        for e in manifest.shards:
            by_group.setdefault(int(e.group), []).append(int(e.shard))
        return [sorted(by_group[g]) for g in sorted(by_group)]
    return [[numbers[i] for i in part] for part in split_groups(len(numbers), groups)]


def group_specs(
    index_dir: str, manifest: Any, layout: list[list[int]], digest: str | None = None
) -> list[GroupSpec]:
    """One ``GroupSpec`` per group of ``layout`` (``digest``: of ``manifest``'s bytes)."""
    gen = int(manifest.generation)
    return [
        GroupSpec(str(index_dir), tuple(int(s) for s in shards), gen, digest) for shards in layout
    ]
