"""Request and response models of the query API (pydantic v2, unknown fields rejected).

A ``SearchRequest`` carries exactly one query kind: ``images`` (base64 image bytes), ``codes``
(hex of the packed ``uint8[n_bits/8]`` code) or ``ids`` (indexed ids). Syntax is checked here —
base64 and hex are decoded strictly, each bad item is reported at its own location (``images[3]``)
— while checks that need the index (code length vs ``n_bits``, unknown ids) happen in the ingress.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
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


def _check_hex_code(value: str) -> str:
    if not value:
        raise ValueError("code is empty")
    if len(value) > 2 * MAX_CODE_BYTES:
        raise ValueError(f"code is longer than {MAX_CODE_BYTES} bytes")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise ValueError("invalid hex: expected an even number of hex digits") from None
    return value


Base64Image = Annotated[str, AfterValidator(_check_base64_image)]
HexCode = Annotated[str, AfterValidator(_check_hex_code)]
IndexId = Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]


class SearchRequest(BaseModel):
    """``POST /v1/search`` body: exactly one of ``images``, ``codes``, ``ids``."""

    model_config = ConfigDict(extra="forbid")

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
    k: StrictInt = Field(default=10, ge=1, le=MAX_K)
    nprobe: StrictInt | None = Field(default=None, ge=1)
    max_distance: StrictInt | None = Field(
        default=None,
        ge=0,
        le=8 * MAX_CODE_BYTES,
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
