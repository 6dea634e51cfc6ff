"""`odh data ...`: write an image set from a source (converters in indexer.converters)."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("odh")


def cmd_data(config: Any) -> int:
    """Run the converter ``config`` describes (one of ``indexer.converters.configs``)."""
    from indexer.converters import run_converter

    info = run_converter(config)
    logger.info("image set written to %s: %s", config.output, info.counts)
    return 0
