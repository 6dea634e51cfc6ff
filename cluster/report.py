"""Human-readable rendering of query results for the terminal (`odh query`, `odh demo`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _label_text(label: Sequence[int] | None, class_names: Sequence[str] | None) -> str:
    if not label:
        return "-"
    if class_names:
        return ",".join(class_names[i] if 0 <= i < len(class_names) else str(i) for i in label)
    return ",".join(str(i) for i in label)


def format_hits(
    names: Sequence[str], result: Any, *, class_names: Sequence[str] | None = None
) -> str:
    """A table per query: rank, id, Hamming distance, label and key of each hit."""
    blocks: list[str] = []
    for name, hits in zip(names, result.results, strict=True):
        rows = [f"{name}", f"  {'rank':>4} {'id':>8} {'dist':>4}  {'label':<14} key"]
        for rank, hit in enumerate(hits, start=1):
            label = _label_text(hit.label, class_names)
            rows.append(f"  {rank:>4} {hit.id:>8} {hit.distance:>4}  {label:<14} {hit.key or '-'}")
        blocks.append("\n".join(rows))
    if getattr(result, "partial", False):
        blocks.append(f"PARTIAL result: searcher groups {result.missing_groups} did not answer")
    return "\n\n".join(blocks)
