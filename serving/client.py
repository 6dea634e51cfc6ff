"""Typed Python client of the query API: ``POST /v1/search``, ``GET /v1/healthz``, ``/v1/stats``,
``POST /v1/admin/reload``.

>>> client = ODHClient("http://127.0.0.1:8000")
>>> result = client.search(ids=[42], k=5)
>>> [hit.id for hit in result[0]]
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

logger = logging.getLogger(__name__)


class ODHClientError(RuntimeError):
    """A request failed: ``status`` is the HTTP status (0 when no answer came), ``message`` the
    server's explanation, ``retry_after`` the seconds an overloaded server (503/429) asked to
    wait before retrying (``None`` when it did not say)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Hit:
    """One neighbour: indexed id, Hamming distance, and the stored key/label."""

    id: int
    distance: int
    key: str | None = None
    label: list[int] | None = None


@dataclass(frozen=True)
class SearchResult:
    """Answer to one search request; iterates/indexes like ``results`` (one hit list per query)."""

    results: list[list[Hit]]
    partial: bool = False
    missing_groups: list[int] = field(default_factory=list)
    n_bits: int = 0
    generation: int = 0
    #: Serve handle hops the request took (measured by the ingress; with ``trace=True`` only).
    hops: int | None = None
    #: Milliseconds per stage of the request path (``Server-Timing``; with ``trace=True`` only).
    timing_ms: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[list[Hit]]:
        return iter(self.results)

    def __getitem__(self, i: int) -> list[Hit]:
        return self.results[i]

    def ids(self) -> list[list[int]]:
        """Hit ids per query."""
        return [[h.id for h in row] for row in self.results]

    def distances(self) -> list[list[int]]:
        """Hit distances per query."""
        return [[h.distance for h in row] for row in self.results]


def _retry_after(headers: Any) -> float | None:
    """``Retry-After`` in seconds (the delay-seconds form), if the server sent one."""
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _codes_to_hex(codes: np.ndarray | Sequence[str]) -> list[str]:
    if isinstance(codes, np.ndarray):
        if codes.dtype != np.uint8 or codes.ndim != 2:
            raise ValueError(
                f"codes must be a uint8[n, n_bits/8] array, got {codes.dtype}{list(codes.shape)}"
            )
        return [row.tobytes().hex() for row in codes]
    out = []
    for i, c in enumerate(codes):
        if not isinstance(c, str):
            raise TypeError(f"codes[{i}] must be a hex string, got {type(c).__name__}")
        out.append(c)
    return out


def _server_timing(header: str) -> dict[str, float]:
    """``{"search": 1.2, ...}`` from a ``Server-Timing: search;dur=1.2, ...`` header."""
    out: dict[str, float] = {}
    for item in header.split(","):
        name, _, rest = item.strip().partition(";")
        if name and rest.startswith("dur="):
            try:
                out[name] = float(rest[4:])
            except ValueError:
                continue
    return out


class ODHClient:
    """Blocking HTTP client of an ODH query server.

    Args:
        url: base URL, e.g. ``http://127.0.0.1:8000`` (route prefix included if there is one).
        timeout: seconds per request.
    """

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ODHClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ODHClientError(0, f"{method} {self.url}{path} failed: {exc}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
                message = body.get("detail", body) if isinstance(body, dict) else body
            except ValueError:
                message = response.text
            raise ODHClientError(response.status_code, str(message), _retry_after(response.headers))
        return response

    def search(
        self,
        images: Sequence[bytes] | None = None,
        codes: np.ndarray | Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
        k: int = 10,
        nprobe: int | None = None,
        max_distance: int | None = None,
        require_all: bool = False,
        trace: bool = False,
    ) -> SearchResult:
        """Search by exactly one of raw image bytes, packed codes (array or hex strings) or ids.

        ``max_distance`` keeps only hits with Hamming distance ``<= max_distance`` (still at most
        ``k``); ``require_all`` turns a partial answer (a searcher group missing) into HTTP 503;
        ``trace`` asks the ingress for the measured request path (``hops``, ``timing_ms``).
        """
        given = [
            n for n, v in (("images", images), ("codes", codes), ("ids", ids)) if v is not None
        ]
        if len(given) != 1:
            raise ValueError(f"give exactly one of images, codes, ids (got {given or 'none'})")
        body: dict[str, Any] = {"k": k}
        if nprobe is not None:
            body["nprobe"] = nprobe
        if max_distance is not None:
            body["max_distance"] = max_distance
        if require_all:
            body["require_all"] = True
        if images is not None:
            body["images"] = [base64.b64encode(bytes(b)).decode("ascii") for b in images]
        elif codes is not None:
            body["codes"] = _codes_to_hex(codes)
        else:
            body["ids"] = [int(i) for i in ids or []]
        headers = {"X-ODH-Trace": "1"} if trace else None
        response = self._send("POST", "/v1/search", json=body, headers=headers)
        raw = response.json()
        hops = response.headers.get("X-ODH-Hops")
        return SearchResult(
            results=[[Hit(**hit) for hit in row] for row in raw["results"]],
            partial=bool(raw.get("partial", False)),
            missing_groups=list(raw.get("missing_groups", [])),
            n_bits=int(raw.get("n_bits", 0)),
            generation=int(raw.get("generation", 0)),
            hops=int(hops) if hops is not None else None,
            timing_ms=_server_timing(response.headers.get("Server-Timing", "")),
        )

    def healthz(self) -> dict[str, Any]:
        """``GET /v1/healthz``."""
        return self._request("GET", "/v1/healthz")

    def stats(self) -> dict[str, Any]:
        """``GET /v1/stats``."""
        return self._request("GET", "/v1/stats")

    def reload(self, token: str, index: str | None = None) -> dict[str, Any]:
        """``POST /v1/admin/reload``: serve the manifest at ``index`` (default: the served
        directory, read again); ``token`` is the server's ``ODH_ADMIN_TOKEN``."""
        body = {"index": index} if index else {}
        headers = {"Authorization": f"Bearer {token}"}
        return self._request("POST", "/v1/admin/reload", json=body, headers=headers)
