"""HTTP ingress of the query API (FastAPI on Ray Serve; OpenAPI docs at ``/docs``).

Routes: ``POST /v1/search``, ``GET /v1/healthz``, ``GET /v1/stats``, ``POST /v1/admin/reload``.
The query logic (hops, fan-out, merge, reload) is ``serving.router.QueryRouter``; this module adds
HTTP, request metrics and the admin token check.

Each group answers within ``timeout_s`` or is left out: the answer then has ``partial: true`` and
the group's number in ``missing_groups`` (with ``require_all: true`` → 503 instead); if no group
answers the request fails with 503. Bad input is answered with a 4xx whose ``detail`` names the
field (``codes[1]``, ``images[0]``, ``ids[2]``); malformed JSON → 400.

``POST /v1/admin/reload`` needs ``Authorization: Bearer <token>`` where the token is the
``ODH_ADMIN_TOKEN`` environment variable of the ingress replica at start (401 otherwise); without
that variable reload is disabled (403).
"""

# No ``from __future__ import annotations``: FastAPI must see the real body type of the routes
# (string annotations on Serve-wrapped methods are not resolved, the body became a query param).
import hmac
import logging
import os
import time
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray import serve

from serving.metrics import NullMetrics, replica_metrics
from serving.router import HOPS, QueryRouter, SearchFailure
from serving.schemas import ReloadRequest, SearchRequest, SearchResponse, format_validation_errors

__all__ = ["HOPS", "Ingress", "QueryRouter", "SearchFailure", "app"]

logger = logging.getLogger(__name__)

#: Environment variable holding the admin token (read once, at ingress start).
ADMIN_TOKEN_ENV: str = "ODH_ADMIN_TOKEN"

app = FastAPI(
    title="ODH index query API",
    version="1",
    description="Hamming top-k over one-bit deep hashing codes. Hops per request kind: "
    + ", ".join(f"{k} {v}" for k, v in HOPS.items())
    + " (Serve handle hops after the HTTP proxy).",
)

#: The metrics recorder of this process's ingress (set when the ``Ingress`` replica starts).
_route_metrics: list[Any] = [NullMetrics()]


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

    @app.post("/v1/search", response_model=SearchResponse)
    async def search(self, request: SearchRequest) -> Response:
        """Hamming top-k for a batch of images, codes or ids."""
        start = time.perf_counter()
        try:
            body = await self.run_search(request, as_json=True)
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
        # JSON built by the router: FastAPI would validate the response model again (slow).
        self.metrics.request(request.kind, "ok")
        self.metrics.stage("total", time.perf_counter() - start)
        return Response(content=body, media_type="application/json")

    @app.get("/v1/healthz")
    async def healthz(self) -> dict[str, Any]:
        """Liveness of the ingress (no hops)."""
        return {"status": "ok", "n_bits": self.n_bits, "generation": self.generation}

    @app.get("/v1/stats")
    async def stats(self) -> dict[str, Any]:
        """Index facts plus what every searcher group holds right now (1 hop)."""
        return await self.collect_stats()

    @app.post("/v1/admin/reload")
    async def admin_reload(
        self, body: ReloadRequest | None = None, authorization: str | None = Header(default=None)
    ) -> dict[str, Any]:
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
