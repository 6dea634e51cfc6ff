"""An index directory built from packed codes held in memory (synthetic benchmark data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def build_code_index(
    work: Path, codes: np.ndarray, n_bits: int, *, rows_per_part: int = 250_000, **build_args: Any
) -> str:
    """Write ``codes`` (ids ``0…n−1``, all in the ``database`` split) as a code set under
    ``work/codes`` and build ``work/index`` from it with ``indexer.build.build(**build_args)``
    (``n_shards``, ``nlist``, ``seed``, …). Needs a running Ray; returns the index directory."""
    from indexer.build import build
    from indexer.codes import write_code_set

    codes_dir = write_code_set(
        str(work / "codes"), np.arange(len(codes), dtype=np.int64), codes, n_bits,
        splits=["database"] * len(codes), encode_info={"checkpoint": None},
        rows_per_part=rows_per_part,
    )  # fmt: skip
    index_dir = str(work / "index")
    build(codes_dir, index_dir, **build_args)
    return index_dir
