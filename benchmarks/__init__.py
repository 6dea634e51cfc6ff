"""Benchmarks: each a module ``benchmarks/<name>.py`` with ``main(argv) -> int``.

``odh bench NAME`` runs one. Each writes ``benchmarks/results/<name>.json`` and ``<name>.md``
(plus PNG plots where a curve says more), recording the machine and the exact command.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence


def available() -> list[str]:
    """Names of the benchmark modules shipped in this package."""
    return sorted(
        m.name
        for m in pkgutil.iter_modules(__path__)
        if not m.name.startswith("_") and m.name != "results"
    )


def run_benchmark(name: str, argv: Sequence[str]) -> int:
    """Run benchmark ``name`` with its own command-line arguments."""
    if name not in available():
        raise ValueError(
            f"unknown benchmark {name!r}; available: {', '.join(available()) or 'none'}"
        )
    module = importlib.import_module(f"benchmarks.{name}")
    return int(module.main(list(argv)))
