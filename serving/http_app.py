"""The query API's FastAPI application object, before any route of the ingress deployment:
error handlers that answer every error (validation, unknown routes, internal) as
``{"detail": ...}`` (``serving.schemas.ErrorResponse``), the request body limit, and the search
page's static files at ``/`` and ``/static/{name}``. ``serving.ingress`` adds the API routes."""

# No ``from __future__ import annotations``: FastAPI must see the real types of the routes.

import logging
from importlib import resources
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving import admission
from serving.metrics import NullMetrics
from serving.schemas import format_validation_errors

__all__ = ["app", "route_metrics"]

logger = logging.getLogger(__name__)

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

app.add_middleware(admission.BodyLimitMiddleware)

#: The metrics recorder of this process's ingress (set when the ``Ingress`` replica starts).
route_metrics: list[Any] = [NullMetrics()]


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
        route_metrics[0].request(_body_kind(getattr(exc, "body", None)), "client_error")
        route_metrics[0].error("bad_image" if bad_image else "bad_request")
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
