"""Request and response models of the query API (pydantic v2, unknown fields rejected).

A ``SearchRequest`` carries exactly one query kind: ``images`` (base64 image bytes), ``codes``
(hex of the packed ``uint8[n_bits/8]`` code) or ``ids`` (indexed ids). Syntax is checked here —
base64 and hex are decoded strictly, each bad item is reported at its own location (``images[3]``)
— while checks that need the index (code length vs ``n_bits``, unknown ids) happen in the ingress.

Every answer of the API is one of the models below, and every error (4xx/5xx, FastAPI's own
validation errors and unknown routes included) is an ``ErrorResponse``: the OpenAPI document
generated from them is the contract typed clients are generated from (tests fuzz it).
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictStr,
    model_validator,
)

from odh_core.images import DEFAULT_IMAGE_LIMITS

logger = logging.getLogger(__name__)

#: Most queries in one request.
MAX_BATCH: int = 256
#: Largest ``k``.
MAX_K: int = 1000
#: Largest encoded image, in bytes: the one image-size policy of every stage.
MAX_IMAGE_BYTES: int = DEFAULT_IMAGE_LIMITS.max_bytes
#: Largest code, in bytes (4096 bits).
MAX_CODE_BYTES: int = 512

_MAX_B64_CHARS = 4 * ((MAX_IMAGE_BYTES + 2) // 3)


def _check_base64_image(value: str) -> str:
    if len(value) > _MAX_B64_CHARS:
        raise ValueError(f"image is larger than {MAX_IMAGE_BYTES} bytes")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64: {exc}") from None
    if not data:
        raise ValueError("image is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"image is larger than {MAX_IMAGE_BYTES} bytes")
    return value


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _check_hex_code(value: str) -> str:
    if not value:
        raise ValueError("code is empty")
    if len(value) > 2 * MAX_CODE_BYTES:
        raise ValueError(f"code is longer than {MAX_CODE_BYTES} bytes")
    bad = next((i for i, ch in enumerate(value) if ch not in _HEX_DIGITS), None)
    if bad is not None:
        raise ValueError(f"invalid hex: character {bad} ({value[bad]!r}) is not hexadecimal")
    if len(value) % 2:
        raise ValueError(f"invalid hex: odd length {len(value)} (two hex digits per byte)")
    return value


#: JSON-schema pattern of standard base64 (what ``base64.b64decode(validate=True)`` accepts).
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
#: JSON-schema pattern of a hex code; the served app narrows it to its exact ``n_bits / 4``.
HEX_PATTERN = r"^(?:[0-9a-fA-F]{2})+$"


def hex_code_pattern(n_bits: int) -> str:
    """The pattern of one ``n_bits``-bit code in hex (``n_bits / 4`` digits)."""
    return f"^[0-9a-fA-F]{{{n_bits // 4}}}$"


Base64Image = Annotated[
    str,
    AfterValidator(_check_base64_image),
    Field(
        json_schema_extra={"pattern": BASE64_PATTERN, "minLength": 4, "maxLength": _MAX_B64_CHARS}
    ),
]
HexCode = Annotated[
    str,
    AfterValidator(_check_hex_code),
    Field(
        json_schema_extra={"pattern": HEX_PATTERN, "minLength": 2, "maxLength": 2 * MAX_CODE_BYTES}
    ),
]


def _integral(value: object) -> object:
    """A JSON number with no fractional part (``3.0``) is an integer, as JSON Schema says;
    booleans and strings stay rejected (strict ints)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


IndexId = Annotated[int, Strict(), Field(ge=0, le=2**63 - 1), BeforeValidator(_integral)]


#: The three query kinds of a ``SearchRequest`` (exactly one per request).
QUERY_KINDS: tuple[str, ...] = ("images", "codes", "ids")


def _one_kind_schema(schema: dict[str, Any]) -> None:
    """JSON schema: exactly one of the query kinds is present, as a (non-null) array."""
    schema["oneOf"] = [
        {"required": [name], "properties": {name: {"type": "array"}}} for name in QUERY_KINDS
    ]


class SearchRequest(BaseModel):
    """``POST /v1/search`` body: exactly one of ``images``, ``codes``, ``ids``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_kind_schema)

    images: list[Base64Image] | None = Field(
        default=None, min_length=1, max_length=MAX_BATCH, description="base64-encoded images"
    )
    codes: list[HexCode] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_BATCH,
        description="hex of packed codes (np.packbits bitorder='little'), n_bits/8 bytes each",
    )
    ids: list[IndexId] | None = Field(
        default=None, min_length=1, max_length=MAX_BATCH, description="indexed ids to query by"
    )
    k: Annotated[int, Strict(), Field(ge=1, le=MAX_K), BeforeValidator(_integral)] = 10
    nprobe: Annotated[int, Strict(), Field(ge=1), BeforeValidator(_integral)] | None = None
    max_distance: (
        Annotated[int, Strict(), Field(ge=0, le=8 * MAX_CODE_BYTES), BeforeValidator(_integral)]
        | None
    ) = Field(
        default=None,
        description="Hamming radius: only hits with distance <= max_distance (still at most k)",
    )
    require_all: StrictBool = Field(
        default=False, description="answer 503 instead of a partial result when a group is missing"
    )

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> SearchRequest:
        given = [name for name in ("images", "codes", "ids") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "exactly one of 'images', 'codes', 'ids' must be given"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> str:
        """Which query kind the request carries: ``images``, ``codes`` or ``ids``."""
        for name in ("images", "codes", "ids"):
            if getattr(self, name) is not None:
                return name
        raise AssertionError("validated request has no query kind")

    @property
    def n_queries(self) -> int:
        """Number of queries in the request."""
        return len(getattr(self, self.kind))

    def image_bytes(self) -> list[bytes]:
        """The decoded images (validated at construction)."""
        return [base64.b64decode(s, validate=True) for s in self.images or []]


class Hit(BaseModel):
    """One neighbour."""

    model_config = ConfigDict(extra="forbid")

    id: int
    distance: int
    key: str | None = None
    label: list[int] | None = None


class SearchResponse(BaseModel):
    """``POST /v1/search`` answer: one hit list per query, best first by ``(distance, id)``."""

    model_config = ConfigDict(extra="forbid")

    results: list[list[Hit]]
    partial: bool = False
    missing_groups: list[int] = Field(default_factory=list)
    n_bits: int
    generation: int


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: ``detail`` says what went wrong and names the field
    (``codes[1]: ...``, ``ids[0]=42 ...``)."""

    model_config = ConfigDict(extra="forbid")

    detail: str


class HealthResponse(BaseModel):
    """``GET /v1/healthz``: the ingress is up (no hops)."""

    model_config = ConfigDict(extra="forbid")

    status: str = "ok"
    n_bits: int
    generation: int


class GroupStats(BaseModel):
    """One searcher group in ``GET /v1/stats``: its shards, and what a replica of it reported
    (``available: false`` and no counts when it did not answer in time)."""

    model_config = ConfigDict(extra="ignore")  # a searcher may report more

    group: int
    available: bool
    shards: list[int] | None = None
    ntotal: int | None = None
    shard_ntotal: list[int] | None = None
    n_bits: int | None = None
    nlist: int | None = None
    generation: int | None = None
    manifest_digest: str | None = None
    num_threads: int | None = None
    replica: str | None = None
    held_generations: list[int] | None = None


class StatsResponse(BaseModel):
    """``GET /v1/stats``: index facts plus what every searcher group holds right now."""

    model_config = ConfigDict(extra="forbid")

    ntotal: int
    shards: int
    groups: list[GroupStats]
    missing_groups: list[int]
    generation: int
    n_bits: int
    nlist: int | None = None
    encoder: str | None = None
    index: str | None = None
    images: str | None = Field(
        default=None, description="image set whose bytes GET /v1/images/{id} serves (if known)"
    )
    class_names: list[str] | None = Field(
        default=None, description="names of the label numbers, from the image set (if known)"
    )
    replicas: int
    placement: str
    timeout_s: float
    encode_timeout_s: float
    limits: dict[str, float] | None = Field(
        default=None,
        description="what one ingress replica admits: body bytes, pixels per image and per "
        "request, search cost (queries × k × nprobe) per request and in flight",
    )


class ReloadGroup(BaseModel):
    """One searcher group after a reload."""

    model_config = ConfigDict(extra="forbid")

    group: int
    shards: list[int]
    replicas_prepared: int


class ReloadResponse(BaseModel):
    """``POST /v1/admin/reload``: the generation served now and the one before."""

    model_config = ConfigDict(extra="forbid")

    index: str
    generation: int
    previous_generation: int
    groups: list[ReloadGroup]


class SampleResponse(BaseModel):
    """``GET /v1/sample``: a few random indexed ids (for the search page's examples)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[int]


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries: ``ErrorResponse`` for each status code."""
    return {
        code: {"model": ErrorResponse, "description": _ERROR_TEXT.get(code, "Error")}
        for code in codes
    }


_ERROR_TEXT = {
    400: "Malformed request (bad JSON, or an input the index cannot take)",
    401: "Missing or wrong admin token",
    403: "The route is disabled",
    404: "Unknown id (or no image set to read from)",
    409: "The new index does not fit this deployment",
    413: "Over a size limit (body, image pixels, search cost); the detail names it",
    422: "A field failed validation (the detail names it)",
    429: "Too much search work in flight; retry after Retry-After seconds",
    500: "Internal error",
    503: "Searcher groups did not answer, or overloaded (Retry-After says when to retry)",
    504: "The query encoder (or the whole request) did not finish in time",
}


class ReloadRequest(BaseModel):
    """``POST /v1/admin/reload`` body: the index directory of the new generation (default: the
    directory served now, whose ``manifest.json`` is read again)."""

    model_config = ConfigDict(extra="forbid")

    index: StrictStr | None = Field(default=None, min_length=1)


def format_validation_errors(errors: list[dict]) -> str:
    """Render pydantic / FastAPI validation errors as ``field[i]: message; ...``.

    The ``body`` prefix FastAPI adds is dropped, so a message names the JSON field as the client
    sent it, e.g. ``images[2]: Value error, invalid base64: ...`` or ``color: Extra inputs are not
    permitted``.
    """
    parts = []
    for err in errors:
        loc = [p for p in err.get("loc", ()) if p != "body"]
        field = ""
        for p in loc:
            field += f"[{p}]" if isinstance(p, int) else (f".{p}" if field else str(p))
        msg = str(err.get("msg", "invalid"))
        parts.append(f"{field or 'body'}: {msg}")
    return "; ".join(parts)
