"""HTTP ingress of the query API (FastAPI on Ray Serve).

Routes: ``POST /v1/search``, ``GET /v1/healthz``, ``GET /v1/stats``.

Serve handle hops per request kind (each hop ≈ 9 ms on the 2-core dev box, so they are kept few; a
fan-out to G groups is one hop of wall time, the calls run concurrently):

* ``codes``  — 1 hop: fan-out ``search`` to every searcher group.
* ``images`` — 2 hops: ``QueryEncoder.encode`` (``@serve.batch`` across requests), then the fan-out.
* ``ids``    — 2 hops: fan-out ``lookup`` to every group (the group holding an id returns its stored
  code; an id no group holds → 404 naming it), then the search fan-out. The query id itself is a
  hit at distance 0 (it is not excluded).
* ``healthz`` — 0 hops; ``stats`` — 1 hop (fan-out ``stats``).

Each group answers within ``timeout_s`` or is left out: the answer then has ``partial: true`` and
the group's number in ``missing_groups``; if no group answers the request fails with 503. Results of
the groups are merged by ``(distance, id)`` with ``serving.merge.merge_topk``. Bad input is answered
with a 4xx whose ``detail`` names the field (``codes[1]``, ``images[0]``, ``ids[2]``); malformed
JSON → 400.
"""

# No ``from __future__ import annotations``: FastAPI must see the real body type of the routes
# (string annotations on Serve-wrapped methods are not resolved, the body became a query param).
import asyncio
import logging
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve

from serving.merge import merge_topk
from serving.schemas import Hit, SearchRequest, SearchResponse, format_validation_errors

logger = logging.getLogger(__name__)

app = FastAPI(title="ODH index query API", version="1")


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    status = 400 if any(e.get("type") == "json_invalid" for e in errors) else 422
    detail = format_validation_errors(errors)
    if status == 400:
        detail = f"malformed JSON body: {detail}"
    return JSONResponse(status_code=status, content={"detail": detail})


class _GroupFailure(Exception):
    """A searcher group timed out or failed."""


class QueryRouter:
    """The query logic behind the HTTP routes: encoder hop, fan-out, merge (plain class, testable
    with any objects that look like Serve handles).

    Args:
        encoder: handle to ``QueryEncoder`` or ``None`` for an index without an encoder.
        groups: one handle per searcher group (group number = position).
        info: index facts from the manifest: ``n_bits``, ``generation``, ``ntotal``, ``nlist``,
            ``shards`` (count), ``group_shards`` (shard numbers per group), ``encoder``
            (checkpoint).
        timeout_s: per-group deadline of one hop.
    """

    def __init__(
        self,
        encoder: Any,
        groups: list[Any],
        info: dict[str, Any],
        timeout_s: float = 5.0,
    ) -> None:
        if not groups:
            raise ValueError("groups: the ingress needs at least one searcher group")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.encoder = encoder
        self.groups = list(groups)
        self.info = dict(info)
        self.n_bits = int(info["n_bits"])
        self.generation = int(info["generation"])
        self.timeout_s = float(timeout_s)

    async def _call_group(self, g: int, method: str, *args: Any) -> Any:
        response = getattr(self.groups[g], method).remote(*args)
        try:
            return await asyncio.wait_for(response, timeout=self.timeout_s)
        except TimeoutError:
            response.cancel()
            logger.warning("searcher group %d: %s timed out after %.3fs", g, method, self.timeout_s)
            raise _GroupFailure(f"group {g} timed out") from None
        except Exception as exc:  # a dead group must not fail the request
            logger.warning("searcher group %d: %s failed: %r", g, method, exc)
            raise _GroupFailure(f"group {g} failed: {exc}") from exc

    async def _fan_out(self, method: str, *args: Any) -> tuple[dict[int, Any], list[int]]:
        outcomes = await asyncio.gather(
            *(self._call_group(g, method, *args) for g in range(len(self.groups))),
            return_exceptions=True,
        )
        answers: dict[int, Any] = {}
        missing: list[int] = []
        for g, out in enumerate(outcomes):
            if isinstance(out, _GroupFailure):
                missing.append(g)
            elif isinstance(out, BaseException):
                raise out
            else:
                answers[g] = out
        return answers, missing

    def _codes_from_hex(self, codes: list[str]) -> np.ndarray:
        width = self.n_bits // 8
        out = np.empty((len(codes), width), dtype=np.uint8)
        for i, text in enumerate(codes):
            raw = bytes.fromhex(text)
            if len(raw) != width:
                raise HTTPException(
                    status_code=422,
                    detail=f"codes[{i}]: expected {width} bytes ({2 * width} hex digits) for "
                    f"{self.n_bits}-bit codes, got {len(raw)} bytes",
                )
            out[i] = np.frombuffer(raw, dtype=np.uint8)
        return out

    async def _codes_from_images(self, request: SearchRequest) -> np.ndarray:
        if self.encoder is None:
            raise HTTPException(status_code=400, detail="images: this index has no query encoder")
        result = await self.encoder.encode.remote(request.image_bytes())
        if result.errors:
            detail = "; ".join(f"images[{i}]: {msg}" for i, msg in result.errors)
            raise HTTPException(status_code=422, detail=detail)
        codes = np.asarray(result.codes, dtype=np.uint8)
        if codes.shape != (request.n_queries, self.n_bits // 8):
            raise HTTPException(
                status_code=500,
                detail=f"encoder returned codes of shape {list(codes.shape)}, expected "
                f"[{request.n_queries}, {self.n_bits // 8}] (encoder/index n_bits mismatch?)",
            )
        return codes

    async def _codes_from_ids(self, ids: list[int]) -> np.ndarray:
        arr = np.asarray(ids, dtype=np.int64)
        answers, missing = await self._fan_out("lookup", arr)
        codes = np.zeros((len(arr), self.n_bits // 8), dtype=np.uint8)
        found = np.zeros(len(arr), dtype=bool)
        for group_codes, group_found in answers.values():
            codes[group_found] = group_codes[group_found]
            found |= group_found
        if not found.all():
            if missing:
                raise HTTPException(
                    status_code=503,
                    detail=f"ids: searcher groups {missing} did not answer the id lookup",
                )
            unknown = [f"ids[{i}]={ids[i]}" for i in np.flatnonzero(~found)]
            raise HTTPException(status_code=404, detail=f"unknown id: {', '.join(unknown)}")
        return codes

    async def run_search(self, request: SearchRequest) -> SearchResponse:
        """Hamming top-k for images, codes or ids (``HTTPException`` on bad input)."""
        if request.kind == "codes":
            codes = self._codes_from_hex(request.codes or [])
        elif request.kind == "images":
            codes = await self._codes_from_images(request)
        else:
            codes = await self._codes_from_ids(request.ids or [])
        answers, missing = await self._fan_out("search", codes, request.k, request.nprobe)
        if not answers:
            raise HTTPException(
                status_code=503, detail=f"no searcher group answered (groups {missing})"
            )
        ordered = [answers[g] for g in sorted(answers)]
        dist, ids = merge_topk([a.distances for a in ordered], [a.ids for a in ordered], request.k)
        # key/label of each hit come from the group that found it.
        attach: dict[int, tuple[str | None, list[int] | None]] = {}
        for a in ordered:
            for row_ids, row_keys, row_labels in zip(a.ids, a.keys, a.labels, strict=True):
                for hid, key, label in zip(row_ids.tolist(), row_keys, row_labels, strict=True):
                    if hid >= 0:
                        attach[hid] = (key, label)
        results = []
        for row_d, row_i in zip(dist.tolist(), ids.tolist(), strict=True):
            hits = [
                Hit(id=i, distance=d, key=attach[i][0], label=attach[i][1])
                for d, i in zip(row_d, row_i, strict=True)
                if i >= 0
            ]
            results.append(hits)
        return SearchResponse(
            results=results,
            partial=bool(missing),
            missing_groups=missing,
            n_bits=self.n_bits,
            generation=self.generation,
        )

    async def collect_stats(self) -> dict[str, Any]:
        """Index facts plus what every searcher group holds right now."""
        answers, missing = await self._fan_out("stats")
        return {
            "ntotal": int(self.info.get("ntotal", sum(a["ntotal"] for a in answers.values()))),
            "shards": int(self.info.get("shards", 0)),
            "groups": [
                {"group": g, "shards": self.info.get("group_shards", [])[g], **answers.get(g, {})}
                | {"available": g in answers}
                for g in range(len(self.groups))
            ],
            "missing_groups": missing,
            "generation": self.generation,
            "n_bits": self.n_bits,
            "nlist": self.info.get("nlist"),
            "encoder": self.info.get("encoder"),
            "timeout_s": self.timeout_s,
        }


@serve.deployment(name="Ingress", num_replicas=1, ray_actor_options={"num_cpus": 0.25})
@serve.ingress(app)
class Ingress(QueryRouter):
    """FastAPI ingress deployment (same arguments as ``QueryRouter``)."""

    @app.post("/v1/search", response_model=SearchResponse)
    async def search(self, request: SearchRequest) -> SearchResponse:
        """Hamming top-k for a batch of images, codes or ids."""
        return await self.run_search(request)

    @app.get("/v1/healthz")
    async def healthz(self) -> dict[str, Any]:
        """Liveness of the ingress (no hops)."""
        return {"status": "ok", "n_bits": self.n_bits, "generation": self.generation}

    @app.get("/v1/stats")
    async def stats(self) -> dict[str, Any]:
        """Index facts plus what every searcher group holds right now."""
        return await self.collect_stats()
