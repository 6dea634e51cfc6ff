"""A searcher group held inside the ingress replica (placement ``ingress``): searches take no
Serve hop at all.

On one node with one group, the ingress → searcher hop (~9 ms p50 on a 2-core machine) costs far
more than the search itself (<1 ms for a 250k-code shard), so the ingress can hold the shards.
``LocalGroup`` answers exactly the calls the router makes on a Serve handle
(``group.search.remote(...)`` → an awaitable with ``cancel()``); the work runs in a thread, and
FAISS releases the GIL while it scans.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LocalGroupSpec:
    """Constructor arguments of a ``SearcherCore`` the ingress builds in its own process."""

    index_dir: str
    shards: tuple[int, ...]
    num_threads: int = 1
    group: int = 0
    mmap_threshold_bytes: int | None = None


class _LocalMethod:
    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn

    def remote(self, *args: Any) -> asyncio.Task[Any]:
        return asyncio.ensure_future(asyncio.to_thread(self._fn, *args))


class LocalGroup:
    """A ``SearcherCore`` behind the call shape of a Serve deployment handle."""

    def __init__(self, spec: LocalGroupSpec) -> None:
        from serving.searcher import SearcherCore

        self.core = SearcherCore(
            spec.index_dir,
            spec.shards,
            spec.num_threads,
            group=spec.group,
            mmap_threshold_bytes=spec.mmap_threshold_bytes,
        )

    def __getattr__(self, name: str) -> _LocalMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        return _LocalMethod(getattr(self.core, name))
