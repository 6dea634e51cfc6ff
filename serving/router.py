"""The query logic behind the HTTP routes: turn a request into codes, fan out, merge.

``QueryRouter`` is a plain class (testable with any objects that look like Serve handles); the
``Ingress`` deployment in ``serving.ingress`` puts HTTP in front of it. The concerns live beside
it: ``serving.fanout`` (deadline, retry, fan-out, hop trace), ``serving.merge`` (top-k merge and
the response model), ``serving.reload`` (the served generation and switching it).

The request path, per query kind (after the HTTP proxy → ingress hop):

* ``codes``  — the fan-out: ``search`` on every group.
* ``images`` — ``QueryEncoder.encode`` (``@serve.batch`` across requests), then the fan-out.
* ``ids``    — ``lookup`` on every group (the group holding an id returns its stored code), then
  the fan-out. The query id itself is a hit at distance 0 — kept on purpose, as FAISS
  ``reconstruct`` + ``search`` would return it.

Each stage that calls a Serve deployment handle is one hop (2, 2 and 1 with ``placement: split``;
with ``placement: ingress`` the groups live in the ingress and only the encoder call is a hop).
``serving.fanout.RequestTrace`` measures it per request (header ``X-ODH-Trace: 1``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np

from serving.errors import SearchFailure
from serving.fanout import FanOut, call_once
from serving.merge import stale_answers
from serving.metrics import NullMetrics
from serving.reload import ServedIndex, reload_index, served_from_info
from serving.response import SearchHits, search_hits
from serving.schemas import (
    GroupStats,
    ReloadResponse,
    SearchRequest,
    StatsResponse,
)

__all__ = ["QueryRouter", "SearchFailure"]

logger = logging.getLogger(__name__)

#: How often (at most, driven by requests) an ingress replica checks ``serving-state.json`` for a
#: reload another replica of its deployment made.
SYNC_EVERY_S: float = 5.0


class QueryRouter:
    """Query → codes → fan-out → merge, plus stats and reload.

    Args:
        encoder: handle to ``QueryEncoder`` or ``None`` for an index without an encoder.
        groups: one handle per searcher group (group number = position).
        info: index facts from the manifest: ``n_bits``, ``generation``, ``ntotal``, ``nlist``,
            ``shards`` (count), ``group_shards`` (shard numbers per group), ``encoder``,
            ``index`` (directory), optionally ``replicas``, ``placement`` and ``images``.
        timeout_s: per-group deadline of one hop (a failed call is retried once within it).
        encode_timeout_s: deadline of the encoder hop (default ``timeout_s``).
        metrics: a ``serving.metrics`` recorder (default: records nothing).
    """

    def __init__(
        self,
        encoder: Any,
        groups: list[Any],
        info: dict[str, Any],
        timeout_s: float = 5.0,
        *,
        encode_timeout_s: float | None = None,
        metrics: Any = None,
    ) -> None:
        if encode_timeout_s is not None and encode_timeout_s <= 0:
            raise ValueError(f"encode_timeout_s must be > 0, got {encode_timeout_s}")
        self.metrics = metrics or NullMetrics()
        self.fanout = FanOut(groups, timeout_s, self.metrics)
        self.encoder = encoder
        self.timeout_s = self.fanout.timeout_s
        self.encode_timeout_s = float(encode_timeout_s or timeout_s)
        self.replicas = int(info.get("replicas", 1))
        self.placement = str(info.get("placement", "split"))
        self.served: ServedIndex = served_from_info(info, len(self.fanout))
        self._reload_lock = asyncio.Lock()
        self.sync_every_s = SYNC_EVERY_S
        self._next_sync = time.monotonic() + self.sync_every_s
        self._sync_task: asyncio.Future[None] | None = None
        self.metrics.generation(self.served.generation)

    @property
    def n_bits(self) -> int:
        return self.served.n_bits

    @property
    def generation(self) -> int:
        return self.served.generation

    def _codes_from_hex(self, codes: list[str], n_bits: int) -> np.ndarray:
        width = n_bits // 8
        out = np.empty((len(codes), width), dtype=np.uint8)
        for i, text in enumerate(codes):
            raw = bytes.fromhex(text)
            if len(raw) != width:
                raise SearchFailure(
                    422,
                    f"codes[{i}]: expected {width} bytes ({2 * width} hex digits) for "
                    f"{n_bits}-bit codes, got {len(raw)} bytes",
                    "bad_request",
                )
            out[i] = np.frombuffer(raw, dtype=np.uint8)
        return out

    async def _codes_from_images(
        self, request: SearchRequest, n_bits: int, encoder_sha256: str | None = None
    ) -> np.ndarray:
        if self.encoder is None:
            raise SearchFailure(400, "images: this index has no query encoder", "bad_request")
        try:
            result = await call_once(
                self.encoder, "encode", (request.image_bytes(),), self.encode_timeout_s
            )
        except TimeoutError:
            raise SearchFailure(
                504, f"images: the encoder did not answer in {self.encode_timeout_s}s", "timeout"
            ) from None
        if result.errors:
            detail = "; ".join(f"images[{i}]: {msg}" for i, msg in result.errors)
            raise SearchFailure(422, detail, "bad_image")
        used = getattr(result, "encoder_sha256", None)
        if encoder_sha256 and used and used != encoder_sha256:
            raise SearchFailure(
                503,
                f"images: the query encoder holds checkpoint {used[:12]}…, the served index was "
                f"encoded with {encoder_sha256[:12]}… (a reload is switching it; retry)",
                "internal",
            )
        codes = np.asarray(result.codes, dtype=np.uint8)
        if codes.shape != (request.n_queries, n_bits // 8):
            raise SearchFailure(
                500,
                f"encoder returned codes of shape {list(codes.shape)}, expected "
                f"[{request.n_queries}, {n_bits // 8}] (encoder/index n_bits mismatch?)",
                "internal",
            )
        return codes

    async def _codes_from_ids(self, served: ServedIndex, ids: list[int]) -> np.ndarray:
        arr = np.asarray(ids, dtype=np.int64)
        out = await self.fanout.all("lookup", lambda g: (arr, served.spec(g)))
        codes = np.zeros((len(arr), served.n_bits // 8), dtype=np.uint8)
        found = np.zeros(len(arr), dtype=bool)
        for group_codes, group_found in out.answers.values():
            codes[group_found] = group_codes[group_found]
            found |= group_found
        if not found.all():
            if out.missing:
                raise SearchFailure(
                    503,
                    f"ids: searcher groups {out.missing} did not answer the id lookup",
                    "timeout" if out.timed_out else "internal",
                )
            unknown = [f"ids[{i}]={ids[i]}" for i in np.flatnonzero(~found)]
            raise SearchFailure(404, f"unknown id: {', '.join(unknown)}", "unknown_id")
        return codes

    async def run_search(self, request: SearchRequest) -> SearchHits:
        """Hamming top-k for images, codes or ids (``SearchFailure`` on bad input)."""
        self._maybe_follow_reloads()
        served = self.served  # one generation for the whole request, even across a reload
        t0 = time.perf_counter()
        if request.kind == "codes":
            codes = self._codes_from_hex(request.codes or [], served.n_bits)
        elif request.kind == "images":
            codes = await self._codes_from_images(request, served.n_bits, served.encoder_sha256)
            self.metrics.stage("encode", time.perf_counter() - t0)
        else:
            codes = await self._codes_from_ids(served, request.ids or [])
        t1 = time.perf_counter()
        out = await self.fanout.all(
            "search", lambda g: (codes, request.k, request.nprobe, served.spec(g))
        )
        t2 = time.perf_counter()
        self.metrics.stage("search", t2 - t1)
        # Never merge answers of different manifests: a stale group counts as missing.
        stale = stale_answers(out.answers, served.generation, served.digest)
        answers = {g: a for g, a in out.answers.items() if g not in stale}
        missing = sorted([*out.missing, *stale])
        for why in stale.values():
            logger.warning("search: dropping a stale answer: %s", why)
        for g in missing:
            self.metrics.partial(g)
        if not answers or (missing and request.require_all):
            why = "no searcher group answered" if not answers else "require_all is set and"
            detail = f"{why} groups {missing} did not answer"
            if stale:
                detail += f" ({'; '.join(stale.values())})"
            raise SearchFailure(503, detail, "timeout" if out.timed_out else "internal")
        response = search_hits(
            [answers[g] for g in sorted(answers)],
            request.k,
            max_distance=request.max_distance,
            missing=missing,
            n_bits=served.n_bits,
            generation=served.generation,
        )
        self.metrics.stage("merge", time.perf_counter() - t2)
        return response

    async def collect_stats(self) -> StatsResponse:
        """Index facts plus what every searcher group holds right now."""
        served = self.served
        out = await self.fanout.all("stats", lambda g: (served.spec(g),))
        info = served.info
        layout = info.get("group_shards", [])
        groups = []
        for g in range(len(self.fanout)):
            answer = dict(out.answers.get(g, {}))
            answer.pop("group", None)
            shards = layout[g] if g < len(layout) else answer.get("shards")
            answer["shards"] = shards
            groups.append(GroupStats(group=g, available=g in out.answers, **answer))
        ntotal = info.get("ntotal")
        if ntotal is None:
            ntotal = sum(int(a.get("ntotal", 0)) for a in out.answers.values())
        return StatsResponse(
            ntotal=int(ntotal),
            shards=int(info.get("shards", 0)),
            groups=groups,
            missing_groups=out.missing,
            generation=served.generation,
            n_bits=served.n_bits,
            nlist=info.get("nlist"),
            encoder=info.get("encoder"),
            index=info.get("index"),
            images=info.get("images"),
            replicas=self.replicas,
            placement=self.placement,
            timeout_s=self.timeout_s,
            encode_timeout_s=self.encode_timeout_s,
        )

    def _maybe_follow_reloads(self) -> None:
        """Every ``sync_every_s`` (in the background, off the request path) follow a reload that
        another ingress replica of this deployment persisted: a reload reaches one replica, and
        the others converge on it within seconds."""
        info = self.served.info
        if not info.get("home") or not info.get("deploy_id"):
            return
        now = time.monotonic()
        if now < self._next_sync or (self._sync_task is not None and not self._sync_task.done()):
            return
        self._next_sync = now + self.sync_every_s
        self._sync_task = asyncio.ensure_future(self._follow_reload())

    async def _follow_reload(self) -> None:
        from serving.reload import read_serving_state

        info = self.served.info
        try:
            state = await asyncio.to_thread(read_serving_state, str(info["home"]))
            if not self._behind(state):
                return
            async with self._reload_lock:
                if not self._behind(state):
                    return
                new, _ = await reload_index(
                    self.fanout,
                    self.served,
                    str(state["index"]),  # type: ignore[index]
                    replicas=self.replicas,
                    placement=self.placement,
                    encoder=self.encoder,
                    persist=False,
                )
                logger.info(
                    "followed a reload to %s generation %d", new.info["index"], new.generation
                )
                self.served = new
                self.metrics.generation(new.generation)
        except Exception as exc:  # keep serving what we have; the next check retries
            logger.warning("could not follow the persisted reload: %r", exc)

    def _behind(self, state: dict[str, Any] | None) -> bool:
        """Whether ``state`` (``serving-state.json``) names a newer reload than the one served."""
        served = self.served
        if not state or state.get("deploy_id") != served.info.get("deploy_id"):
            return False
        if not state.get("index"):
            return False
        if str(state["index"]) != str(served.info.get("index")):
            return True
        return int(state.get("generation") or 0) > served.generation

    async def reload(self, index: str | None = None, timeout_s: float = 300.0) -> ReloadResponse:
        """Load the manifest at ``index`` (default: the served directory, read again) in every
        searcher replica, then switch to it at once. Raises ``SearchFailure`` and keeps the old
        generation if anything fails."""
        async with self._reload_lock:
            new, answer = await reload_index(
                self.fanout,
                self.served,
                index,
                replicas=self.replicas,
                placement=self.placement,
                timeout_s=timeout_s,
                encoder=self.encoder,
            )
            self.served = new
            self.metrics.generation(new.generation)
            return answer
