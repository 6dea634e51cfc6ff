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

    async def _search(
        self, codes: np.ndarray, k: int, nprobe: int | None, spec: Any = None
    ) -> GroupHits:
        await self._wait()
        bits = np.unpackbits(codes, axis=1)[:, None, :] != np.unpackbits(self.codes, axis=1)[None]
        dist = bits.sum(axis=2).astype(np.int32)
        order = np.lexsort((np.broadcast_to(self.ids, dist.shape), dist), axis=1)[:, :k]
        d = np.take_along_axis(dist, order, axis=1)
        i = self.ids[order]
        keys = [[f"k{x}" for x in row] for row in i.tolist()]
        labels = [[[x % 3] for x in row] for row in i.tolist()]
        return GroupHits(d, i, keys, labels)

    async def _lookup(self, ids: np.ndarray, spec: Any = None) -> tuple[np.ndarray, np.ndarray]:
        await self._wait()
        pos = {int(x): r for r, x in enumerate(self.ids)}
        found = np.array([int(x) in pos for x in ids])
        codes = np.zeros((len(ids), N_BITS // 8), np.uint8)
        for r, x in enumerate(ids):
            if int(x) in pos:
                codes[r] = self.codes[pos[int(x)]]
        return codes, found

    async def _stats(self, spec: Any = None) -> dict[str, Any]:
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
    assert stats.missing_groups == [1] and stats.groups[0].ntotal == 25
    assert stats.groups[1].available is False and stats.groups[1].ntotal is None
    assert stats.n_bits == N_BITS and stats.groups[1].shards == [1]


class _Recorder:
    """A metrics recorder that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.calls.append((name, *args))


class _FlakyGroup(FakeGroup):
    """Fails the first ``fails`` search calls (a replica that died), then answers."""

    def __init__(self, ids: np.ndarray, codes: np.ndarray, fails: int) -> None:
        super().__init__(ids, codes)
        self.fails = fails
        inner = self._search

        async def flaky(*args: Any) -> GroupHits:
            if self.fails > 0:
                self.fails -= 1
                raise RuntimeError("ActorDiedError")
            return await inner(*args)

        self.search = _Method(flaky)


class _SlowEncoder:
    def __init__(self) -> None:
        async def encode(images: list[bytes]) -> None:
            await asyncio.sleep(5)

        self.encode = _Method(encode)


def test_max_distance_keeps_hits_within_the_radius_and_at_most_k() -> None:
    ids, codes = _data()
    router = _router([FakeGroup(ids[:25], codes[:25]), FakeGroup(ids[25:], codes[25:])])
    body = {"codes": [c.tobytes().hex() for c in codes[:4]], "k": 30}
    full = _search(router, body)
    for radius in (0, 3, 6):
        got = _search(router, body | {"max_distance": radius})
        for row_all, row in zip(full.results, got.results, strict=True):
            assert row == [h for h in row_all if h.distance <= radius]
    small = _search(router, body | {"max_distance": 16, "k": 2})
    assert all(len(row) == 2 for row in small.results)


def test_require_all_turns_partial_into_503() -> None:
    ids, codes = _data()
    router = _router([FakeGroup(ids[:25], codes[:25]), FakeGroup(ids[25:], codes[25:], fail=True)])
    body = {"codes": [codes[0].tobytes().hex()], "k": 3}
    assert _search(router, body).missing_groups == [1]
    with pytest.raises(HTTPException) as info:
        _search(router, body | {"require_all": True})
    assert info.value.status_code == 503 and "[1]" in info.value.detail


def test_a_failed_call_is_retried_once_within_the_deadline() -> None:
    ids, codes = _data()
    once = _router([_FlakyGroup(ids[:25], codes[:25], fails=1), FakeGroup(ids[25:], codes[25:])])
    body = {"codes": [codes[0].tobytes().hex()], "k": 5}
    assert not _search(once, body).partial
    twice = _router([_FlakyGroup(ids[:25], codes[:25], fails=2), FakeGroup(ids[25:], codes[25:])])
    assert _search(twice, body).missing_groups == [0]


def test_encoder_timeout_is_504() -> None:
    ids, codes = _data()
    info = {"n_bits": N_BITS, "generation": 1}
    router = QueryRouter(_SlowEncoder(), [FakeGroup(ids, codes)], info, encode_timeout_s=0.1)
    with pytest.raises(HTTPException) as info_exc:
        _search(router, {"images": ["aGVsbG8="]})
    assert info_exc.value.status_code == 504 and "images" in info_exc.value.detail


def test_metrics_record_stages_groups_and_partials() -> None:
    ids, codes = _data()
    recorder = _Recorder()
    groups = [FakeGroup(ids[:25], codes[:25]), FakeGroup(ids[25:], codes[25:], fail=True)]
    router = QueryRouter(None, groups, {"n_bits": N_BITS, "generation": 4}, metrics=recorder)
    _search(router, {"codes": [codes[0].tobytes().hex()]})
    names = [c[0] for c in recorder.calls]
    assert ("generation", 4) in recorder.calls and ("partial", 1) in recorder.calls
    assert {"stage", "group"} <= set(names)
    assert {c[1] for c in recorder.calls if c[0] == "stage"} == {"search", "merge"}
    assert router.served.specs is None  # fakes get no GroupSpec


def test_trace_records_every_call_of_the_request_path() -> None:
    """The trace lists the calls made, per stage; fakes are no Serve handles → 0 hops."""
    from serving.fanout import RequestTrace, current_trace

    ids, codes = _data()
    router = _router([FakeGroup(ids[:25], codes[:25]), FakeGroup(ids[25:], codes[25:])])

    async def traced(body: dict) -> RequestTrace:
        trace = RequestTrace()
        token = current_trace.set(trace)
        try:
            await router.run_search(SearchRequest.model_validate(body))
        finally:
            current_trace.reset(token)
        return trace

    by_ids = asyncio.run(traced({"ids": [int(ids[0])], "k": 3}))
    assert [(c.stage, c.target) for c in by_ids.calls] == [
        ("lookup", "FakeGroup"),
        ("lookup", "FakeGroup"),
        ("search", "FakeGroup"),
        ("search", "FakeGroup"),
    ]
    assert by_ids.hops == 0 and set(by_ids.stage_seconds()) == {"lookup", "search"}
    by_codes = asyncio.run(traced({"codes": [codes[0].tobytes().hex()], "k": 3}))
    assert [c.stage for c in by_codes.calls] == ["search", "search"]
    assert current_trace.get() is None  # nothing recorded outside a traced request


def test_stale_answers_name_the_group_and_why() -> None:
    from serving.merge import stale_answers

    def hits(generation: int | None, digest: str | None) -> GroupHits:
        empty = np.zeros((1, 1), np.int64)
        return GroupHits(empty.astype(np.int32), empty - 1, [[None]], [[None]], generation, digest)

    answers = {0: hits(3, "d3"), 1: hits(2, "d2"), 2: hits(3, "other"), 3: hits(None, None)}
    stale = stale_answers(answers, 3, "d3")
    assert set(stale) == {1, 2}  # an answer naming no manifest (an older searcher) is taken
    assert "generation 2, not 3" in stale[1] and "different manifest" in stale[2]
    assert stale_answers(answers, 3, None) == {1: stale[1]}  # no digest known: numbers only
