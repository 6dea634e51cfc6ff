"""What one ingress replica admits: body size, image pixels, search cost, work in flight.

Every check answers before the expensive part starts, with a status and a ``detail`` that names
the limit:

* **body** — ``BodyLimitMiddleware`` (ASGI): ``Content-Length`` above ``max_body_bytes`` → 413
  before a byte of the body is read; a body without a length (chunked) is counted while it is
  read and cut off at the limit → 413. Either way before JSON parsing.
* **pixels** — ``check_images``: each query image's size is read from its header only (no pixel
  is decoded; formats outside ``odh_core.images.ALLOWED_IMAGE_FORMATS`` → 422): more than
  ``max_image_pixels`` (scaled to the encoder's input side, ``ServeConfig.image_side_factor``)
  → 413 naming ``images[i]``; all images together above ``max_request_pixels`` → 413.
* **cost** — ``search_cost`` = queries × k × nprobe (nprobe as the searchers apply it: default and
  cap ``nlist``). Above ``max_search_cost`` → 413; a request that would push this replica's cost
  in flight above ``max_inflight_cost`` → 429 with ``Retry-After`` (``CostGate``).

Serve itself bounds the request count (``max_ongoing_requests`` / ``max_queued_requests`` on every
deployment, see ``serving.app.build_app``): beyond them the proxy answers 503 + ``Retry-After``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import stat
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException

from serving.errors import SearchFailure

logger = logging.getLogger(__name__)

__all__ = [
    "BODY_LIMIT",
    "BodyLimitMiddleware",
    "CostGate",
    "check_images",
    "read_admin_token",
    "retry_after",
    "search_cost",
]

#: The body limit of this process's ingress (bytes; set when the ``Ingress`` replica starts).
BODY_LIMIT: list[int] = [16 * 2**20]

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _BodyTooLarge(HTTPException):
    """Raised from ``receive`` mid-body: an HTTP error, so FastAPI's body reader passes it on
    (any other exception there becomes a 400 "error parsing the body")."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=_too_large_detail(limit, None))


def _too_large_detail(limit: int, seen: int | None) -> str:
    size = f" is {seen} bytes," if seen is not None else ""
    return f"request body{size} over the limit of {limit} bytes (max_body_mb)"


class BodyLimitMiddleware:
    """ASGI middleware: 413 for a request body over ``BODY_LIMIT[0]`` bytes (see module doc)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        limit = BODY_LIMIT[0]
        length = None
        for name, value in scope.get("headers") or ():
            if name.lower() == b"content-length":
                length = value
        if length is not None:
            if not length.strip().isdigit():
                await _send_error(send, 400, "Content-Length is not a number")
                return
            if int(length) > limit:
                await _send_error(send, 413, _too_large_detail(limit, int(length)))
                return
        received = 0
        started = False

        async def limited_receive() -> MutableMapping[str, Any]:
            nonlocal received
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        async def tracking_send(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _send_error(send, 413, _too_large_detail(limit, None))


async def _send_error(send: _Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def check_images(images: list[bytes], max_image_pixels: int, max_request_pixels: int) -> int:
    """Header-only size check of a request's images (see module doc); returns the total pixels.

    Raises ``SearchFailure`` 422 (not an accepted image) or 413 (a pixel limit)."""
    from odh_core.images import ImageDecodeError, probe_image

    total = 0
    for i, data in enumerate(images):
        try:
            _, width, height = probe_image(data)
        except ImageDecodeError as exc:
            raise SearchFailure(422, f"images[{i}]: {exc}", "bad_image") from None
        pixels = width * height
        if pixels > max_image_pixels:
            raise SearchFailure(
                413,
                f"images[{i}]: {width}x{height} = {pixels} pixels, over this model's per-image "
                f"limit of {max_image_pixels} pixels (image_side_factor × the encoder's input "
                "side, squared)",
                "bad_image",
            )
        total += pixels
        if total > max_request_pixels:
            raise SearchFailure(
                413,
                f"images[0..{i}]: {total} pixels in all, over the per-request limit of "
                f"{max_request_pixels} pixels (max_request_mpx)",
                "bad_image",
            )
    return total


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))


def search_cost(n_queries: int, k: int, nprobe: int | None, nlist: int | None) -> int:
    """Queries × k × lists probed (the searchers probe ``nlist`` lists by default, and never more
    than ``nlist``)."""
    lists = max(1, int(nlist or 1))
    probe = lists if nprobe is None else max(1, min(int(nprobe), lists))
    return int(n_queries) * int(k) * probe


@dataclass
class CostGate:
    """The search cost in flight in one ingress replica (single event loop: no lock needed)."""

    max_search_cost: int
    max_inflight_cost: int
    retry_after_s: float
    inflight: int = 0

    def admit(self, cost: int) -> None:
        """Reserve ``cost`` (``release`` it when done); ``SearchFailure`` 413/429 otherwise."""
        if cost > self.max_search_cost:
            raise SearchFailure(
                413,
                f"search cost {cost} (queries × k × nprobe) is over the per-request limit of "
                f"{self.max_search_cost} (max_search_cost): ask for fewer queries, a smaller k "
                "or nprobe",
                "bad_request",
            )
        if self.inflight + cost > self.max_inflight_cost:
            raise SearchFailure(
                429,
                f"busy: {self.inflight} search cost in flight, this request's {cost} would pass "
                f"the limit of {self.max_inflight_cost} (max_inflight_cost); retry later",
                "overload",
                headers={"Retry-After": retry_after(self.retry_after_s)},
            )
        self.inflight += cost

    def release(self, cost: int) -> None:
        self.inflight = max(0, self.inflight - cost)


def read_admin_token(path: str | None) -> str | None:
    """The admin token from ``path`` (``None``: reload disabled). A missing or empty file fails
    the replica's start, naming the file (never its content)."""
    if path is None:
        return None
    try:
        mode = os.stat(path).st_mode
        with open(path, encoding="utf-8") as fh:
            token = fh.read().strip()
    except OSError as exc:
        raise ValueError(f"admin_token_file: cannot read {path}: {exc.strerror}") from None
    if not token:
        raise ValueError(f"admin_token_file: {path} is empty")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("admin_token_file %s is readable by others (chmod 600 recommended)", path)
    return token
