"""Benchmarks: each a module with a frozen dataclass ``Config`` and ``run(config) -> int``.

``odh bench NAME`` finds them through the ``odh.benchmarks`` entry points (pyproject.toml) and
builds ``NAME``'s flags from its ``Config``; ``python -m benchmarks.NAME`` runs one directly.
Each writes ``benchmarks/results/<name>.json`` and ``<name>.md`` (plus PNG plots where a curve
says more), recording the machine and the exact command.
"""
