"""``benchmarks._synthetic_index.build_code_index``: in-memory codes → a loadable sharded index."""

from __future__ import annotations

from pathlib import Path

from benchmarks._synthetic_index import build_code_index
from indexer.manifest import load_manifest
from indexer.synthetic_codes import clustered_codes


def test_build_code_index_holds_every_code(ray_local: None, tmp_path: Path) -> None:
    codes = clustered_codes(600, 64, n_centres=8, flip=0.05, seed=3)
    index_dir = build_code_index(tmp_path, codes, 64, n_shards=2, nlist=8, seed=0)
    manifest, _ = load_manifest(index_dir)
    assert manifest.n_bits == 64 and manifest.n_shards == 2
    assert manifest.ntotal == len(codes)
    assert Path(index_dir) == tmp_path / "index"
