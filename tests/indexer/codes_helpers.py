"""Seeded code sets for the build tests, written as the encode job writes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from indexer import storage
from indexer.codes import code_schema


def write_codes_dir(
    root: Path, ids: np.ndarray, codes: np.ndarray, n_bits: int, *, meta: bool = True
) -> str:
    """A code directory as the encode job writes it.

    ``meta=True``: the full schema (key, label, split) in two parts, with encoder provenance in
    ``_encode.json``. ``meta=False``: only ``id`` and ``code`` in one part (key/label are optional).
    """
    if meta:
        n = len(ids)
        table = pa.Table.from_pydict(
            {
                "id": pa.array(ids, pa.int64()),
                "code": pa.array([c.tobytes() for c in codes], pa.binary(n_bits // 8)),
                "key": [f"item/{i}" for i in ids],
                "label": pa.array([[int(i) % 5] for i in ids], pa.list_(pa.int32())),
                "split": ["database"] * n,
            },
            schema=code_schema(n_bits),
        )
        (root / "codes").mkdir(parents=True)
        half = n // 2
        pq.write_table(table.slice(0, half), root / "codes" / "part-000000000000-a.parquet")
        pq.write_table(table.slice(half), root / "codes" / "part-000000000001-b.parquet")
        storage.write_json_atomic(
            str(root / "_encode.json"),
            {"n_bits": n_bits, "checkpoint": "/ckpt/x", "checkpoint_sha256": "ab" * 32},
        )
        return str(root)
    table = pa.table(
        {"id": pa.array(ids, pa.int64()),
         "code": pa.array([c.tobytes() for c in codes], pa.binary(n_bits // 8))},
        schema=pa.schema([code_schema(n_bits).field("id"), code_schema(n_bits).field("code")]),
    )  # fmt: skip
    (root / "codes").mkdir(parents=True)
    pq.write_table(table, root / "codes" / "part-000000000000-a.parquet")
    storage.write_json_atomic(str(root / "_encode.json"), {"n_bits": n_bits})
    return str(root)


def clustered_codes(n: int, n_bits: int, n_centres: int, flip: float, seed: int) -> np.ndarray:
    """``n`` codes around ``n_centres`` random centres, each bit flipped with prob. ``flip``."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, size=(n_centres, n_bits), dtype=np.uint8)
    bits = centres[rng.integers(0, n_centres, size=n)]
    bits ^= (rng.random((n, n_bits)) < flip).astype(np.uint8)
    return np.packbits(bits, axis=1, bitorder="little")
