"""`odh gc`: remove old index generations (dry run unless --yes)."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass

from odh_core.options import option

logger = logging.getLogger("odh")


@dataclass(frozen=True)
class GcConfig:
    """Which index `odh gc` cleans, and how many published generations it keeps."""

    index: str = option(help="index directory or s3:// prefix")
    keep: int = option(2, help="published generations to keep (the current one counts)")
    yes: bool = option(False, help="delete (default: only list what would be deleted)")

    def __post_init__(self) -> None:
        if not self.index:
            raise ValueError("GcConfig.index is required")
        if self.keep < 1:
            raise ValueError(
                f"GcConfig.keep must be >= 1 (the current generation), got {self.keep}"
            )


def cmd_gc(config: GcConfig) -> int:
    from indexer.index_gc import collect_garbage

    report = collect_garbage(config.index, config.keep, dry_run=not config.yes)
    sys.stdout.write(json.dumps(asdict(report), indent=2) + "\n")
    if report.dry_run and report.files:
        logger.info("dry run: rerun with --yes to delete %d files", len(report.files))
    return 0
