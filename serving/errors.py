"""``SearchFailure``: an HTTP error of the query API with the metrics kind it counts as."""

from __future__ import annotations

import logging
import re

from fastapi import HTTPException

logger = logging.getLogger(__name__)


class SearchFailure(HTTPException):
    """An HTTP error (body: ``serving.schemas.ErrorResponse``) with the
    ``odh_search_errors_total`` kind it counts as (one of ``serving.metrics.ERROR_KINDS``)."""

    def __init__(
        self, status_code: int, detail: str, kind: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status_code, detail=detail, headers=headers)
        self.kind = kind


_REMOTE_NOISE = (
    re.compile(r"ray::\S+"),
    re.compile(r"\((?:pid|ip|actor_id)=[^)]*\)"),
    re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"),
)


def short_reason(text: BaseException | str, limit: int = 300) -> str:
    """One line of at most ``limit`` characters for a client: Ray wraps remote errors in a
    multi-kB traceback with PIDs, host addresses and paths, so only the first line (what failed)
    and the last (the original exception) are kept, with Ray's task names, PIDs and IP addresses
    removed. The full text belongs in the server's log."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    if not lines:
        return type(text).__name__ if isinstance(text, BaseException) else ""
    reason = lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1]}"
    for pattern in _REMOTE_NOISE:
        reason = pattern.sub("", reason)
    reason = " ".join(reason.split())
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"
