"""HTTP ingress of the query API (FastAPI on Ray Serve; OpenAPI docs at ``/docs``), and the
search page at ``/``.

Routes: ``POST /v1/search``, ``GET /v1/healthz``, ``GET /v1/stats``, ``GET /v1/sample``,
``GET /v1/images/{id}``, ``POST /v1/admin/reload``; ``GET /`` is the search page (plain
HTML/CSS/JS from ``serving/static``; the app object, its error handlers and the page's routes are
``serving.http_app``). The query logic is ``serving.router.QueryRouter``; this module adds the API
routes, request metrics, the admin token check and the image bytes.

Each group answers within ``timeout_s`` or is left out: the answer then has ``partial: true`` and
the group's number in ``missing_groups`` (with ``require_all: true`` → 503 instead); if no group
answers the request fails with 503. Bad input is answered with a 4xx whose ``detail`` names the
field (``codes[1]``, ``images[0]``, ``ids[2]``); malformed JSON → 400. Every error body is a
``serving.schemas.ErrorResponse`` and every status a route can answer is in the OpenAPI document.

A search request with the header ``X-ODH-Trace: 1`` gets the measured request path back: header
``X-ODH-Hops`` (Serve handle hops after the HTTP proxy) and ``Server-Timing`` (per stage).

Bounded work (``serving.admission``): a request body over ``max_body_mb`` → 413 before it is
parsed; query images over the per-image or per-request pixel limit → 413 (sizes read from the
image headers, nothing decoded); a search over ``max_search_cost`` (queries × k × nprobe) → 413,
one that would pass the replica's ``max_inflight_cost`` → 429 with ``Retry-After``; a request
still running after its deadline (encoder + two group deadlines) is cancelled → 504. Every 503
carries ``Retry-After``; Serve sheds requests beyond ``max_ongoing_requests`` +
``max_queued_requests`` with 503 + ``Retry-After`` before they reach the ingress.

``POST /v1/admin/reload`` needs ``Authorization: Bearer <token>`` where the token is the content
of ``admin_token_file``, read by the ingress replica at start (401 otherwise); without it reload
is disabled (403). The token never travels through environment variables or logs. Reload errors
answer one short line; the full error is logged by the ingress.
"""

# No ``from __future__ import annotations``: FastAPI must see the real body type of the routes
# (string annotations on Serve-wrapped methods are not resolved, the body became a query param).
import asyncio
import hmac
import logging
import time
from typing import Annotated, Any

import numpy as np
from fastapi import Header, HTTPException, Path, Query
from fastapi.responses import JSONResponse, Response
from ray import serve

from serving import admission, fanout
from serving.errors import SearchFailure, short_reason
from serving.http_app import app, route_metrics
from serving.ingress_images import ImageSetSource
from serving.metrics import replica_metrics
from serving.router import QueryRouter
from serving.schemas import (
    HealthResponse,
    ReloadRequest,
    ReloadResponse,
    SampleResponse,
    SearchRequest,
    SearchResponse,
    StatsResponse,
    error_responses,
    hex_code_pattern,
)
from serving.wire import ARROW_STREAM, wants_arrow

__all__ = ["Ingress", "QueryRouter", "SearchFailure", "app"]

logger = logging.getLogger(__name__)

#: Request header that asks for the measured request path (hops, per-stage time).
TRACE_HEADER: str = "X-ODH-Trace"
#: Most ids ``GET /v1/sample`` returns.
MAX_SAMPLE: int = 64


@serve.deployment(name="Ingress", num_replicas=1, ray_actor_options={"num_cpus": 0.25})
@serve.ingress(app)
class Ingress(ImageSetSource, QueryRouter):
    """FastAPI ingress deployment (same arguments as ``QueryRouter``)."""

    def __init__(
        self,
        encoder: Any,
        groups: list[Any],
        info: dict[str, Any],
        timeout_s: float = 5.0,
        encode_timeout_s: float | None = None,
        *,
        limits: dict[str, Any] | None = None,
        admin_token_file: str | None = None,
    ) -> None:
        from serving.config import RequestLimits, ServeConfig
        from serving.local_group import LocalGroup, LocalGroupSpec

        metrics = replica_metrics()
        route_metrics[0] = metrics
        QueryRouter.__init__(
            self,
            encoder,
            [LocalGroup(g) if isinstance(g, LocalGroupSpec) else g for g in groups],
            info,
            timeout_s,
            encode_timeout_s=encode_timeout_s,
            metrics=metrics,
        )
        if limits is None:
            limits = ServeConfig(index=str(info.get("index") or "-")).limits(None).to_dict()
        self.limits = RequestLimits(**limits)
        admission.BODY_LIMIT[0] = self.limits.max_body_bytes
        self.cost_gate = admission.CostGate(
            self.limits.max_search_cost, self.limits.max_inflight_cost, self.limits.retry_after_s
        )
        # the whole request path: encoder hop (images) or id lookup, then the search hop
        self.request_deadline_s = self.encode_timeout_s + 2 * self.timeout_s + 1.0
        self._admin_token = admission.read_admin_token(admin_token_file)
        if self._admin_token is None:
            logger.info("no admin_token_file: POST /v1/admin/reload is disabled")
        self._ids: dict[int, np.ndarray] = {}
        ImageSetSource.__init__(self)
        self._openapi_doc: dict[str, Any] | None = None

    def _openapi(self) -> dict[str, Any]:
        """The OpenAPI document, with code strings of exactly this index's ``n_bits``."""
        if self._openapi_doc is None:
            from fastapi.openapi.utils import get_openapi

            doc = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            codes = doc["components"]["schemas"]["SearchRequest"]["properties"]["codes"]
            width = self.n_bits // 4
            for alternative in codes.get("anyOf", []):
                if alternative.get("type") == "array":
                    alternative["items"].update(
                        pattern=hex_code_pattern(self.n_bits), minLength=width, maxLength=width
                    )
            codes["description"] = f"hex of packed {self.n_bits}-bit codes ({width} hex digits)"
            self._openapi_doc = doc
        return self._openapi_doc

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(self) -> JSONResponse:
        """The OpenAPI document of this deployment."""
        return JSONResponse(self._openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs(self) -> Response:
        """Swagger UI over ``openapi.json`` (relative: works under any route prefix)."""
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(openapi_url="openapi.json", title=f"{app.title} — docs")

    @app.post(
        "/v1/search",
        response_model=SearchResponse,
        responses={
            200: {"content": {ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}}}},
            **error_responses(400, 404, 413, 422, 429, 500, 503, 504),
        },
    )
    async def search(
        self,
        request: SearchRequest,
        x_odh_trace: Annotated[str | None, Header(include_in_schema=False)] = None,
        accept: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Response:
        """Hamming top-k for a batch of images, codes or ids.

        The answer is JSON, or with ``Accept: application/vnd.apache.arrow.stream`` an Arrow IPC
        stream of the same hits (one row per query, fixed-size lists of k slots; see
        ``serving.wire``) that a client reads without a Python object per hit. Errors are JSON
        either way."""
        start = time.perf_counter()
        trace = fanout.RequestTrace() if x_odh_trace in ("1", "true") else None
        # (the ContextVar through its module: route methods are pickled by value with the app)
        token = fanout.current_trace.set(trace)
        cost = 0
        try:
            cost = self._admit(request)
            answer = await asyncio.wait_for(self.run_search(request), self.request_deadline_s)
        except SearchFailure as exc:
            status = "client_error" if exc.status_code < 500 else "server_error"
            self.metrics.request(request.kind, status)
            self.metrics.error(exc.kind)
            if exc.status_code == 503 and not exc.headers:
                retry = admission.retry_after(self.limits.retry_after_s)
                raise SearchFailure(503, exc.detail, exc.kind, {"Retry-After": retry}) from None
            raise
        except TimeoutError:  # the deadline cancelled the request's remaining work
            self.metrics.request(request.kind, "server_error")
            self.metrics.error("timeout")
            raise SearchFailure(
                504,
                f"the request did not finish within its deadline of {self.request_deadline_s}s "
                "(its remaining work was cancelled)",
                "timeout",
            ) from None
        except Exception:
            logger.exception("search failed")
            self.metrics.request(request.kind, "server_error")
            self.metrics.error("internal")
            raise HTTPException(status_code=500, detail="internal error (see the logs)") from None
        finally:
            self.cost_gate.release(cost)
            fanout.current_trace.reset(token)
        self.metrics.request(request.kind, "ok")
        self.metrics.stage("total", time.perf_counter() - start)
        headers = {}
        if trace is not None:
            total_ms = 1e3 * (time.perf_counter() - start)
            timing = [f"{s};dur={1e3 * t:.3f}" for s, t in trace.stage_seconds().items()]
            headers = {
                "X-ODH-Hops": str(trace.hops),
                "Server-Timing": ", ".join([*timing, f"total;dur={total_ms:.3f}"]),
            }
        # Serialised straight from the merged arrays (``SearchHits.to_json``, the shape
        # ``SearchResponse`` declares); FastAPI would validate a model per hit again.
        if wants_arrow(accept):
            return Response(answer.to_arrow(), media_type=ARROW_STREAM, headers=headers)
        return Response(answer.to_json(), media_type="application/json", headers=headers)

    def _admit(self, request: SearchRequest) -> int:
        """Pixel and cost checks before any work starts; returns the cost reserved in the gate
        (``SearchFailure`` 413/422/429 otherwise)."""
        if request.kind == "images":
            admission.check_images(
                request.image_bytes(),
                self.limits.max_image_pixels,
                self.limits.max_request_pixels,
            )
        nlist = self.served.info.get("nlist")
        # an omitted nprobe is the index's recorded default (else every list)
        nprobe = (
            request.nprobe if request.nprobe is not None else self.served.info.get("default_nprobe")
        )
        cost = admission.search_cost(request.n_queries, request.k, nprobe, nlist)
        self.cost_gate.admit(cost)
        return cost

    @app.get("/v1/healthz", response_model=HealthResponse, responses=error_responses(500))
    async def healthz(self) -> HealthResponse:
        """Liveness of the ingress (no hops)."""
        return HealthResponse(n_bits=self.n_bits, generation=self.generation)

    @app.get("/v1/stats", response_model=StatsResponse, responses=error_responses(500))
    async def stats(self) -> StatsResponse:
        """Index facts plus what every searcher group holds right now (1 hop)."""
        out = await self.collect_stats()
        out.limits = self.limits.to_dict()
        out.images = await self._image_set()
        if out.images:
            out.class_names = await self._class_names(out.images)
        return out

    @app.get(
        "/v1/images/{image_id}",
        response_class=Response,
        responses={
            200: {
                "description": "The stored image bytes (PNG, JPEG, WebP, GIF or BMP)",
                "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
            },
            **error_responses(404, 413, 422, 500),
        },
    )
    async def image(self, image_id: Annotated[int, Path(ge=0, le=2**63 - 1)]) -> Response:
        """The stored bytes of an indexed image, with its media type (for thumbnails)."""
        from serving.images import MAX_SERVED_IMAGE_BYTES, ImageUnavailable, content_type

        store = await self._store()
        try:
            data = await asyncio.to_thread(store.get, image_id)
        except ImageUnavailable as exc:
            raise HTTPException(status_code=404, detail=f"images: {exc}") from None
        if len(data) > MAX_SERVED_IMAGE_BYTES:
            raise HTTPException(
                status_code=413,
                detail=f"images: id {image_id} is {len(data)} bytes, more than the served "
                f"limit of {MAX_SERVED_IMAGE_BYTES}",
            )
        return Response(
            data,
            media_type=content_type(data),
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    @app.get("/v1/sample", response_model=SampleResponse, responses=error_responses(422, 500))
    async def sample(
        self,
        n: Annotated[int, Query(ge=1, le=MAX_SAMPLE)] = 8,
        seed: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    ) -> SampleResponse:
        """``n`` random ids of the served index (examples to search by)."""
        from serving.images import index_ids

        served = self.served
        async with self._load_lock:
            if served.generation not in self._ids:
                self._ids = {
                    served.generation: await asyncio.to_thread(index_ids, str(served.info["index"]))
                }
        ids = self._ids[served.generation]
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(ids), size=min(n, len(ids)), replace=False) if len(ids) else []
        return SampleResponse(ids=[int(ids[i]) for i in pick])

    @app.post(
        "/v1/admin/reload",
        response_model=ReloadResponse,
        responses=error_responses(400, 401, 403, 409, 422, 500),
    )
    async def admin_reload(
        self, body: ReloadRequest | None = None, authorization: str | None = Header(default=None)
    ) -> ReloadResponse:
        """Load a new manifest generation into every searcher replica, then switch atomically."""
        if self._admin_token is None:
            raise HTTPException(
                status_code=403,
                detail="reload is disabled: the server was started without an admin token file",
            )
        expected = f"Bearer {self._admin_token}".encode()
        if not authorization or not hmac.compare_digest(authorization.encode(), expected):
            raise HTTPException(
                status_code=401,
                detail="Authorization: a valid 'Bearer <admin token>' header is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            return await self.reload(body.index if body else None)
        except SearchFailure as exc:
            logger.error("reload failed (%d): %s", exc.status_code, exc.detail)
            raise SearchFailure(exc.status_code, short_reason(exc.detail), exc.kind) from None
        except Exception as exc:
            logger.exception("reload failed")
            raise HTTPException(
                status_code=500, detail=f"reload failed: {short_reason(exc)}"
            ) from None
