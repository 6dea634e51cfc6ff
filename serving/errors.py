"""``SearchFailure``: an HTTP error of the query API with the metrics kind it counts as."""

from __future__ import annotations

import logging

from fastapi import HTTPException

logger = logging.getLogger(__name__)


class SearchFailure(HTTPException):
    """An HTTP error (body: ``serving.schemas.ErrorResponse``) with the
    ``odh_search_errors_total`` kind it counts as (one of ``serving.metrics.ERROR_KINDS``)."""

    def __init__(self, status_code: int, detail: str, kind: str) -> None:
        super().__init__(status_code=status_code, detail=detail)
        self.kind = kind
