"""HTTP ingress of the query API (FastAPI on Ray Serve; OpenAPI docs at ``/docs``), and the
search page at ``/``.

Routes: ``POST /v1/search``, ``GET /v1/healthz``, ``GET /v1/stats``, ``GET /v1/sample``,
``GET /v1/images/{id}``, ``POST /v1/admin/reload``; ``GET /`` is the search page (plain
HTML/CSS/JS from ``serving/static``). The query logic is ``serving.router.QueryRouter``; this
module adds HTTP, request metrics, the admin token check and the image bytes.

Each group answers within ``timeout_s`` or is left out: the answer then has ``partial: true`` and
the group's number in ``missing_groups`` (with ``require_all: true`` → 503 instead); if no group
answers the request fails with 503. Bad input is answered with a 4xx whose ``detail`` names the
field (``codes[1]``, ``images[0]``, ``ids[2]``); malformed JSON → 400. Every error body is a
``serving.schemas.ErrorResponse`` and every status a route can answer is in the OpenAPI document.

A search request with the header ``X-ODH-Trace: 1`` gets the measured request path back: header
``X-ODH-Hops`` (Serve handle hops after the HTTP proxy) and ``Server-Timing`` (per stage).

``POST /v1/admin/reload`` needs ``Authorization: Bearer <token>`` where the token is the
``ODH_ADMIN_TOKEN`` environment variable of the ingress replica at start (401 otherwise); without
that variable reload is disabled (403).
"""

# No ``from __future__ import annotations``: FastAPI must see the real body type of the routes
# (string annotations on Serve-wrapped methods are not resolved, the body became a query param).
import asyncio
import hmac
import logging
import os
import time
from importlib import resources
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving import fanout
from serving.errors import SearchFailure
from serving.metrics import NullMetrics, replica_metrics
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
    format_validation_errors,
    hex_code_pattern,
)

__all__ = ["Ingress", "QueryRouter", "SearchFailure", "app"]

logger = logging.getLogger(__name__)

#: Environment variable holding the admin token (read once, at ingress start).
ADMIN_TOKEN_ENV: str = "ODH_ADMIN_TOKEN"
#: Request header that asks for the measured request path (hops, per-stage time).
TRACE_HEADER: str = "X-ODH-Trace"
#: Most ids ``GET /v1/sample`` returns.
MAX_SAMPLE: int = 64

#: The search page's files (``serving/static``) and their media types.
_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

# /openapi.json and /docs are routes of the Ingress below: the document names the served n_bits.
app = FastAPI(
    openapi_url=None,
    docs_url=None,
    redoc_url=None,
    title="ODH index query API",
    version="1",
    description="Hamming top-k over one-bit deep hashing codes. Search by `images` (base64), "
    "`codes` (hex) or `ids`; every error body is `{detail: str}`. A search page is served at `/`.",
)

#: The metrics recorder of this process's ingress (set when the ``Ingress`` replica starts).
_route_metrics: list[Any] = [NullMetrics()]


def _static(name: str) -> bytes:
    return resources.files("serving").joinpath("static", name).read_bytes()


def _body_kind(body: Any) -> str:
    if isinstance(body, dict):
        for name in ("images", "codes", "ids"):
            if name in body:
                return name
    return "unknown"


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    status = 400 if any(e.get("type") == "json_invalid" for e in errors) else 422
    detail = format_validation_errors(errors)
    if status == 400:
        detail = f"malformed JSON body: {detail}"
    if request.url.path.endswith("/v1/search"):
        bad_image = any("images" in e.get("loc", ()) for e in errors)
        _route_metrics[0].request(_body_kind(getattr(exc, "body", None)), "client_error")
        _route_metrics[0].error("bad_image" if bad_image else "bad_request")
    return JSONResponse(status_code=status, content={"detail": detail})


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Every HTTP error (unknown routes too) as an ``ErrorResponse``."""
    return JSONResponse(
        status_code=exc.status_code,
        content={"detail": str(exc.detail)},
        headers=getattr(exc, "headers", None),
    )


@app.exception_handler(Exception)
async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("%s %s failed: %r", request.method, request.url.path, exc)
    return JSONResponse(status_code=500, content={"detail": "internal error (see the logs)"})


@app.get("/", include_in_schema=False)
async def page() -> Response:
    """The search page."""
    return Response(_static("index.html"), media_type=_STATIC["index.html"])


@app.get("/static/{name}", include_in_schema=False)
async def static_file(name: str) -> Response:
    """The search page's script and style sheet."""
    if name not in _STATIC:
        raise HTTPException(status_code=404, detail=f"no static file {name!r}")
    return Response(_static(name), media_type=_STATIC[name])


@serve.deployment(name="Ingress", num_replicas=1, ray_actor_options={"num_cpus": 0.25})
@serve.ingress(app)
class Ingress(QueryRouter):
    """FastAPI ingress deployment (same arguments as ``QueryRouter``)."""

    def __init__(
        self,
        encoder: Any,
        groups: list[Any],
        info: dict[str, Any],
        timeout_s: float = 5.0,
        encode_timeout_s: float | None = None,
    ) -> None:
        from serving.local_group import LocalGroup, LocalGroupSpec

        metrics = replica_metrics()
        _route_metrics[0] = metrics
        super().__init__(
            encoder,
            [LocalGroup(g) if isinstance(g, LocalGroupSpec) else g for g in groups],
            info,
            timeout_s,
            encode_timeout_s=encode_timeout_s,
            metrics=metrics,
        )
        self._admin_token = os.environ.get(ADMIN_TOKEN_ENV) or None
        if self._admin_token is None:
            logger.info("%s is not set: POST /v1/admin/reload is disabled", ADMIN_TOKEN_ENV)
        self._image_sets: dict[str, str | None] = {}
        self._names: dict[str, list[str] | None] = {}
        self._stores: dict[str, Any] = {}
        self._ids: dict[int, np.ndarray] = {}
        self._load_lock = asyncio.Lock()
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
        responses=error_responses(400, 404, 422, 500, 503, 504),
    )
    async def search(
        self,
        request: SearchRequest,
        x_odh_trace: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Response:
        """Hamming top-k for a batch of images, codes or ids."""
        start = time.perf_counter()
        trace = fanout.RequestTrace() if x_odh_trace in ("1", "true") else None
        # (the ContextVar through its module: route methods are pickled by value with the app)
        token = fanout.current_trace.set(trace)
        try:
            answer = await self.run_search(request)
        except SearchFailure as exc:
            status = "client_error" if exc.status_code < 500 else "server_error"
            self.metrics.request(request.kind, status)
            self.metrics.error(exc.kind)
            raise
        except Exception:
            logger.exception("search failed")
            self.metrics.request(request.kind, "server_error")
            self.metrics.error("internal")
            raise HTTPException(status_code=500, detail="internal error (see the logs)") from None
        finally:
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
        # The validated model, serialised once by pydantic (FastAPI would validate it again).
        return Response(answer.model_dump_json(), media_type="application/json", headers=headers)

    @app.get("/v1/healthz", response_model=HealthResponse, responses=error_responses(500))
    async def healthz(self) -> HealthResponse:
        """Liveness of the ingress (no hops)."""
        return HealthResponse(n_bits=self.n_bits, generation=self.generation)

    @app.get("/v1/stats", response_model=StatsResponse, responses=error_responses(500))
    async def stats(self) -> StatsResponse:
        """Index facts plus what every searcher group holds right now (1 hop)."""
        out = await self.collect_stats()
        out.images = await self._image_set()
        if out.images:
            out.class_names = await self._class_names(out.images)
        return out

    async def _class_names(self, image_set: str) -> list[str] | None:
        from serving.images import class_names_of

        if image_set not in self._names:
            try:
                self._names[image_set] = await asyncio.to_thread(class_names_of, image_set)
            except (OSError, ValueError) as exc:
                logger.warning("no class names for %s: %r", image_set, exc)
                self._names[image_set] = None
        return self._names[image_set]

    async def _image_set(self) -> str | None:
        """The image set of the served index (explicit ``images``, else its provenance)."""
        from serving.images import image_set_of

        info = self.served.info
        if info.get("images"):
            return str(info["images"])
        index_dir = str(info.get("index") or "")
        if index_dir and index_dir not in self._image_sets:
            try:
                found = await asyncio.to_thread(image_set_of, index_dir)
            except (OSError, ValueError) as exc:
                logger.warning("no image set for %s: %r", index_dir, exc)
                found = None
            self._image_sets[index_dir] = found
        return self._image_sets.get(index_dir)

    async def _store(self) -> Any:
        from serving.images import ImageStore

        image_set = await self._image_set()
        if image_set is None:
            raise HTTPException(
                status_code=404,
                detail="images: this index does not say which image set it was built from "
                "(an index built before image provenance was recorded); start the server "
                "with the 'images' argument to serve thumbnails",
            )
        async with self._load_lock:
            if image_set not in self._stores:
                try:
                    self._stores[image_set] = await asyncio.to_thread(ImageStore, image_set)
                except (OSError, ValueError) as exc:
                    raise HTTPException(
                        status_code=404, detail=f"images: cannot read {image_set}: {exc}"
                    ) from exc
        return self._stores[image_set]

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
                status_code=403, detail=f"reload is disabled: {ADMIN_TOKEN_ENV} was not set"
            )
        expected = f"Bearer {self._admin_token}".encode()
        if not authorization or not hmac.compare_digest(authorization.encode(), expected):
            raise HTTPException(
                status_code=401,
                detail="Authorization: a valid 'Bearer <admin token>' header is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await self.reload(body.index if body else None)
