"""QueryRouter (the ingress logic) with fake group handles: cross-group merge, timeouts → partial,
failures, lookups — no Ray needed."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from fastapi import HTTPException

from serving.ingress import QueryRouter
from serving.schemas import SearchRequest
from serving.searcher import GroupHits

N_BITS = 16


class _Response:
    """Looks like a Serve DeploymentResponse: awaitable, cancellable."""

    def __init__(self, coro: Any) -> None:
        self._task = asyncio.ensure_future(coro)

    def __await__(self):
        return self._task.__await__()

    def cancel(self) -> None:
        self._task.cancel()


class _Method:
    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def remote(self, *args: Any) -> _Response:
        return _Response(self._fn(*args))


class FakeGroup:
    """A searcher group over a few codes, brute force, with optional delay / failure."""

    def __init__(self, ids: np.ndarray, codes: np.ndarray, delay: float = 0.0, fail: bool = False):
        self.ids, self.codes, self.delay, self.fail = ids, codes, delay, fail
        self.search = _Method(self._search)
        self.lookup = _Method(self._lookup)
        self.stats = _Method(self._stats)

    async def _wait(self) -> None:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("replica died")

    async def _search(self, codes: np.ndarray, k: int, nprobe: int | None) -> GroupHits:
        await self._wait()
        bits = np.unpackbits(codes, axis=1)[:, None, :] != np.unpackbits(self.codes, axis=1)[None]
        dist = bits.sum(axis=2).astype(np.int32)
        order = np.lexsort((np.broadcast_to(self.ids, dist.shape), dist), axis=1)[:, :k]
        d = np.take_along_axis(dist, order, axis=1)
        i = self.ids[order]
        keys = [[f"k{x}" for x in row] for row in i.tolist()]
        labels = [[[x % 3] for x in row] for row in i.tolist()]
        return GroupHits(d, i, keys, labels)

    async def _lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        await self._wait()
        pos = {int(x): r for r, x in enumerate(self.ids)}
        found = np.array([int(x) in pos for x in ids])
        codes = np.zeros((len(ids), N_BITS // 8), np.uint8)
        for r, x in enumerate(ids):
            if int(x) in pos:
                codes[r] = self.codes[pos[int(x)]]
        return codes, found

    async def _stats(self) -> dict[str, Any]:
        await self._wait()
        return {"ntotal": len(self.ids)}


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.permutation(1000)[:40].astype(np.int64)
    codes = rng.integers(0, 256, size=(40, N_BITS // 8), dtype=np.uint8)
    return ids, codes


def _router(groups: list[FakeGroup], timeout_s: float = 0.5) -> QueryRouter:
    info = {
        "n_bits": N_BITS,
        "generation": 3,
        "ntotal": 40,
        "shards": 2,
        "group_shards": [[0], [1]],
    }
    return QueryRouter(None, groups, info, timeout_s=timeout_s)


def _search(router: QueryRouter, body: dict) -> Any:
    return asyncio.run(router.run_search(SearchRequest.model_validate(body)))


def test_merge_across_groups_equals_single_group() -> None:
    ids, codes = _data()
    split = _router([FakeGroup(ids[:25], codes[:25]), FakeGroup(ids[25:], codes[25:])])
    whole = _router([FakeGroup(ids, codes)])
    body = {"codes": [c.tobytes().hex() for c in codes[:6]], "k": 12}
    got, want = _search(split, body), _search(whole, body)
    assert got == want and not got.partial and got.generation == 3
    assert all(h.key == f"k{h.id}" and h.label == [h.id % 3] for h in got.results[0])


def test_slow_group_gives_partial_result() -> None:
    ids, codes = _data()
    router = _router(
        [FakeGroup(ids[:25], codes[:25]), FakeGroup(ids[25:], codes[25:], delay=5.0)],
        timeout_s=0.2,
    )
    got = _search(router, {"codes": [codes[30].tobytes().hex()], "k": 5})
    assert got.partial and got.missing_groups == [1]
    assert all(h.id in set(ids[:25].tolist()) for h in got.results[0])


def test_failed_group_is_missing_and_all_missing_is_503() -> None:
    ids, codes = _data()
    router = _router([FakeGroup(ids[:25], codes[:25], fail=True), FakeGroup(ids[25:], codes[25:])])
    got = _search(router, {"codes": [codes[0].tobytes().hex()], "k": 3})
    assert got.missing_groups == [0] and len(got.results[0]) == 3
    down = _router([FakeGroup(ids, codes, fail=True)])
    with pytest.raises(HTTPException) as info:
        _search(down, {"codes": [codes[0].tobytes().hex()]})
    assert info.value.status_code == 503


def test_ids_codes_and_images_errors_name_the_field() -> None:
    ids, codes = _data()
    router = _router([FakeGroup(ids[:25], codes[:25]), FakeGroup(ids[25:], codes[25:])])
    got = _search(router, {"ids": [int(ids[30]), int(ids[3])], "k": 4})
    assert [row[0].id for row in got.results] == [int(ids[30]), int(ids[3])]
    assert all(row[0].distance == 0 for row in got.results)
    unknown = int(np.setdiff1d(np.arange(1000), ids)[0])
    cases = [
        ({"ids": [int(ids[0]), unknown]}, 404, f"ids[1]={unknown}"),
        ({"codes": ["abcd", "ab"]}, 422, "codes[1]"),
        ({"images": ["aGVsbG8="]}, 400, "images"),
    ]
    for body, status, text in cases:
        with pytest.raises(HTTPException) as info:
            _search(router, body)
        assert info.value.status_code == status and text in info.value.detail


def test_stats_reports_missing_group() -> None:
    ids, codes = _data()
    router = _router([FakeGroup(ids[:25], codes[:25]), FakeGroup(ids[25:], codes[25:], fail=True)])
    stats = asyncio.run(router.collect_stats())
    assert stats["missing_groups"] == [1] and stats["groups"][0]["ntotal"] == 25
    assert stats["groups"][1]["available"] is False and stats["n_bits"] == N_BITS
