"""Typed Python client of the query API: ``POST /v1/search``, ``GET /v1/healthz``, ``/v1/stats``,
``POST /v1/admin/reload``.

>>> client = ODHClient("http://127.0.0.1:8000")
>>> result = client.search(ids=[42], k=5)
>>> [hit.id for hit in result[0]]
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import httpx
import numpy as np
import pyarrow as pa

from serving.config import RESPONSE_FORMATS
from serving.wire import ARROW_STREAM, NO_HIT_DISTANCE, decode_hits

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


@dataclass(frozen=True, eq=False)
class SearchResult:
    """Answer to one search request; iterates/indexes like ``results`` (one hit list per query).

    ``id_array int64[nq, k]`` and ``distance_array int32[nq, k]`` hold the hits as arrays (a slot
    with no hit, always at a row's end, has id ``-1``); ``keys`` / ``labels`` are row-major, one
    entry per slot. ``results`` (``Hit`` objects) is built on first use only.
    """

    id_array: np.ndarray
    distance_array: np.ndarray
    keys: Sequence[str | None]
    labels: Sequence[list[int] | None]
    partial: bool = False
    missing_groups: list[int] = field(default_factory=list)
    n_bits: int = 0
    generation: int = 0
    #: Serve handle hops the request took (measured by the ingress; with ``trace=True`` only).
    hops: int | None = None
    #: Milliseconds per stage of the request path (``Server-Timing``; with ``trace=True`` only).
    timing_ms: dict[str, float] = field(default_factory=dict)

    @cached_property
    def results(self) -> list[list[Hit]]:
        """Hits per query, best first by ``(distance, id)``."""
        keys = self.keys.to_pylist() if isinstance(self.keys, pa.Array) else list(self.keys)
        labels = self.labels.to_pylist() if isinstance(self.labels, pa.Array) else self.labels
        k = self.id_array.shape[1]
        return [
            [
                Hit(i, d, keys[r * k + c], labels[r * k + c])
                for c, (i, d) in enumerate(zip(row_i, row_d, strict=True))
                if i >= 0
            ]
            for r, (row_i, row_d) in enumerate(
                zip(self.id_array.tolist(), self.distance_array.tolist(), strict=True)
            )
        ]

    def __len__(self) -> int:
        return len(self.id_array)

    def to_dict(self) -> dict[str, Any]:
        """The answer as plain JSON-ready values (``results`` as lists of hit dicts, the JSON
        answer's shape, plus ``hops`` / ``timing_ms``)."""
        return {
            "results": [[dataclasses.asdict(h) for h in row] for row in self.results],
            "partial": self.partial,
            "missing_groups": list(self.missing_groups),
            "n_bits": self.n_bits,
            "generation": self.generation,
            "hops": self.hops,
            "timing_ms": dict(self.timing_ms),
        }

    def __iter__(self) -> Iterator[list[Hit]]:
        return iter(self.results)

    def __getitem__(self, i: int) -> list[Hit]:
        return self.results[i]

    def ids(self) -> list[list[int]]:
        """Hit ids per query."""
        return [[i for i in row if i >= 0] for row in self.id_array.tolist()]

    def distances(self) -> list[list[int]]:
        """Hit distances per query."""
        valid = self.id_array >= 0
        return [row[ok].tolist() for row, ok in zip(self.distance_array, valid, strict=True)]


def _json_hits(raw: dict[str, Any]) -> dict[str, Any]:
    """``SearchResult`` arrays from a JSON answer (rows padded to the longest with no-hit slots)."""
    rows = raw["results"]
    k = max((len(row) for row in rows), default=0)
    ids = np.full((len(rows), k), -1, dtype=np.int64)
    distances = np.full((len(rows), k), NO_HIT_DISTANCE, dtype=np.int32)
    keys: list[str | None] = [None] * (len(rows) * k)
    labels: list[list[int] | None] = [None] * (len(rows) * k)
    for r, row in enumerate(rows):
        for c, hit in enumerate(row):
            ids[r, c], distances[r, c] = hit["id"], hit["distance"]
            keys[r * k + c], labels[r * k + c] = hit.get("key"), hit.get("label")
    return {
        "id_array": ids,
        "distance_array": distances,
        "keys": keys,
        "labels": labels,
        "partial": bool(raw.get("partial", False)),
        "missing_groups": list(raw.get("missing_groups", [])),
        "n_bits": int(raw.get("n_bits", 0)),
        "generation": int(raw.get("generation", 0)),
    }


def _arrow_hits(body: bytes) -> dict[str, Any]:
    """``SearchResult`` arrays from an Arrow answer (``serving.wire``), no object per hit."""
    wire = decode_hits(body)
    return {
        "id_array": wire.ids,
        "distance_array": wire.distances,
        "keys": wire.keys,
        "labels": wire.labels,
        "partial": bool(wire.meta.get("partial", False)),
        "missing_groups": list(wire.meta.get("missing_groups", [])),
        "n_bits": int(wire.meta.get("n_bits", 0)),
        "generation": int(wire.meta.get("generation", 0)),
    }


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
        response_format: ``arrow`` (default: search answers come as an Arrow IPC stream, read
            into arrays without a Python object per hit; ``serving.wire``) or ``json``.
    """

    def __init__(self, url: str, timeout: float = 30.0, response_format: str = "arrow") -> None:
        if response_format not in RESPONSE_FORMATS:
            raise ValueError(
                f"response_format must be one of {RESPONSE_FORMATS}, got {response_format!r}"
            )
        self.response_format = response_format
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
        headers = {"X-ODH-Trace": "1"} if trace else {}
        if self.response_format == "arrow":
            headers["Accept"] = f"{ARROW_STREAM}, application/json;q=0.5"
        response = self._send("POST", "/v1/search", json=body, headers=headers)
        media = response.headers.get("content-type", "").split(";")[0].strip()
        arrow = media == ARROW_STREAM
        hits = _arrow_hits(response.content) if arrow else _json_hits(response.json())
        hops = response.headers.get("X-ODH-Hops")
        return SearchResult(
            **hits,
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
