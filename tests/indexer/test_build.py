"""Index build: sharded IVF search equals brute force / one global IVF; manifest; checksums."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from indexer import storage
from indexer.build import build, default_nlist
from indexer.codes import code_arrays, read_codes, write_code_set
from indexer.manifest import read_manifest
from indexer.search import open_index
from indexer.shards import (
    load_meta,
    load_quantizer,
    load_shard,
    shard_of,
    splitmix64,
)
from indexer.synthetic_codes import clustered_codes, uniform_codes
from odh_core.packing import hamming_distances


def write_codes_dir(root: Path, ids: np.ndarray, codes: np.ndarray, n_bits: int) -> str:
    """A code set with every passthrough column and encoder provenance, in two parts."""
    return write_code_set(
        str(root), ids, codes, n_bits,
        keys=[f"item/{i}" for i in ids], labels=[[int(i) % 5] for i in ids],
        splits=["database"] * len(ids),
        encode_info={"checkpoint": "/ckpt/x", "checkpoint_sha256": "ab" * 32},
        rows_per_part=max(1, (len(ids) + 1) // 2),
    )  # fmt: skip


def test_splitmix64_and_shard_of() -> None:
    assert int(splitmix64(np.array([0]))[0]) == 0xE220A8397B1DCDAF  # reference value
    ids = np.arange(10_000)
    s = shard_of(ids, 4)
    assert s.dtype == np.int64 and set(s.tolist()) == {0, 1, 2, 3}
    assert np.abs(np.bincount(s) - 2500).max() < 150  # well mixed
    np.testing.assert_array_equal(shard_of(ids, 4), s)
    with pytest.raises(ValueError, match="n_shards"):
        shard_of(ids, 0)
    assert default_nlist(100) == 2 and default_nlist(1_000_000) == 4000 and default_nlist(5) == 1


@pytest.fixture(scope="module")
def random_index(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> tuple:
    root = tmp_path_factory.mktemp("random")
    rng = np.random.default_rng(0)
    n, n_bits = 3000, 32
    ids = rng.choice(10**9, size=n, replace=False).astype(np.int64)
    codes = uniform_codes(n, n_bits, seed=0)
    codes_dir = write_codes_dir(root / "codes", ids, codes, n_bits)
    manifest = build(codes_dir, str(root / "index"), n_shards=3, nlist=16, seed=0)
    return str(root / "index"), manifest, ids, codes


def test_manifest_and_meta(random_index: tuple) -> None:
    index_dir, manifest, ids, codes = random_index
    assert read_manifest(index_dir) == manifest
    assert manifest.ntotal == len(ids) and manifest.n_shards == 3 and manifest.nlist == 16
    assert manifest.n_bits == 32 and manifest.metric == "hamming" and manifest.generation == 1
    assert manifest.encoder_checkpoint == "/ckpt/x" and manifest.encoder_sha256 == "ab" * 32
    assert manifest.quantizer_sha256 == storage.sha256_of(
        f"{index_dir}/gen-000001/quantizer.faissbin"
    )
    assert manifest.quantizer_file == "gen-000001/quantizer.faissbin"
    assert all(e.file.startswith("gen-000001/") for e in manifest.shards)
    assert load_quantizer(index_dir, manifest).ntotal == 0
    lookup = dict(zip(ids.tolist(), codes, strict=True))
    seen = []
    for entry in manifest.shards:
        assert entry.sha256 == storage.sha256_of(f"{index_dir}/{entry.file}")
        meta = load_meta(index_dir, entry)
        assert meta.column_names == ["id", "code", "key", "label"]
        assert meta.num_rows == entry.ntotal
        m_ids, m_codes = code_arrays(meta, 32)
        assert (shard_of(m_ids, 3) == entry.shard).all()
        np.testing.assert_array_equal(m_codes, np.stack([lookup[i] for i in m_ids.tolist()]))
        seen.extend(m_ids.tolist())
    assert sorted(seen) == sorted(ids.tolist())


def test_exact_search_equals_brute_force(random_index: tuple) -> None:
    index_dir, manifest, ids, codes = random_index
    queries = np.concatenate([codes[:5], uniform_codes(20, 32, seed=1)])
    k = 25
    dist, idx = open_index(index_dir).search(queries, k, nprobe=manifest.nlist)
    true = hamming_distances(queries, codes)
    for q in range(len(queries)):
        # ties: compare the multiset of top-k distances, then check every returned id's distance
        np.testing.assert_array_equal(dist[q], np.sort(true[q])[:k])
        pos = {int(i): j for j, i in enumerate(ids)}
        assert [true[q, pos[int(i)]] for i in idx[q]] == dist[q].tolist()
        assert len(set(idx[q].tolist())) == k
        # merge order is (distance, id)
        pairs = list(zip(dist[q], idx[q], strict=True))
        assert pairs == sorted(pairs)


def test_mmap_load_matches(random_index: tuple) -> None:
    index_dir, _, _, codes = random_index
    a = open_index(index_dir).search(codes[:10], 10, nprobe=4)
    b = open_index(index_dir, mmap=True).search(codes[:10], 10, nprobe=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_clustered_sharded_equals_global_ivf(tmp_path: Path, ray_local: None) -> None:
    import faiss

    n, n_bits = 4000, 64
    ids = np.arange(n, dtype=np.int64) * 7 + 3
    codes = clustered_codes(n, n_bits, n_centres=20, flip=0.08, seed=2)
    codes_dir = write_codes_dir(tmp_path / "codes", ids, codes, n_bits)
    manifest = build(codes_dir, str(tmp_path / "index"), n_shards=4, seed=5)
    assert manifest.nlist == default_nlist(n)
    index_dir = str(tmp_path / "index")
    group = open_index(index_dir)
    glob = load_quantizer(index_dir, manifest)
    glob.add_with_ids(codes, ids)
    queries = clustered_codes(30, n_bits, n_centres=20, flip=0.08, seed=2)  # same seed: centres
    k = 20
    for nprobe in (1, 3):
        assert nprobe < manifest.nlist
        dist, idx = group.search(queries, k, nprobe=nprobe)
        g_dist, g_idx = glob.search(queries, k, params=faiss.SearchParametersIVF(nprobe=nprobe))
        np.testing.assert_array_equal(dist, g_dist)  # same probe lists ⇒ same top-k distances
        found = idx >= 0
        assert found.any()
        np.testing.assert_array_equal(found, g_idx >= 0)
    # and an exact search still equals brute force
    dist, _ = group.search(queries, k, nprobe=manifest.nlist)
    np.testing.assert_array_equal(dist, np.sort(hamming_distances(queries, codes), axis=1)[:, :k])


def test_sha256_mismatch_detected(random_index: tuple, tmp_path: Path) -> None:
    index_dir, manifest, _, _ = random_index
    entry = manifest.shards[1]
    bad_dir = tmp_path / "bad"
    (bad_dir / "gen-000001").mkdir(parents=True)
    data = bytearray(Path(index_dir, entry.file).read_bytes())
    data[-5] ^= 0xFF
    (bad_dir / entry.file).write_bytes(bytes(data))
    (bad_dir / entry.meta_file).write_bytes(Path(index_dir, entry.meta_file).read_bytes() + b"x")
    with pytest.raises(ValueError, match=r"shard-00001\.faissbin: sha256 mismatch"):
        load_shard(str(bad_dir), entry)
    with pytest.raises(ValueError, match=r"shard-00001\.faissbin: sha256 mismatch"):
        load_shard(str(bad_dir), entry, mmap=True)
    with pytest.raises(ValueError, match=r"meta-00001\.parquet: sha256 mismatch"):
        load_meta(str(bad_dir), entry)


def test_read_manifest_errors(random_index: tuple, tmp_path: Path) -> None:
    index_dir, _, _, _ = random_index
    with pytest.raises(FileNotFoundError, match=r"manifest\.json not found"):
        read_manifest(str(tmp_path))
    obj = json.loads(Path(index_dir, "manifest.json").read_text())
    obj["format_version"] = 3
    Path(tmp_path, "manifest.json").write_text(json.dumps(obj))
    with pytest.raises(ValueError, match="format_version 3 is not supported"):
        read_manifest(str(tmp_path))


def test_code_length_mismatch_names_file(tmp_path: Path) -> None:
    ids = np.arange(10, dtype=np.int64)
    codes = np.zeros((10, 2), dtype=np.uint8)
    codes_dir = write_codes_dir(tmp_path, ids, codes, 16)
    storage.write_json_atomic(str(tmp_path / "_encode.json"), {"n_bits": 32})
    with pytest.raises(ValueError, match=r"part-00000\.parquet: column 'code' holds 16-bit"):
        read_codes(codes_dir)
    table = pq.read_table(io.BytesIO(Path(tmp_path, "codes", "part-00000.parquet").read_bytes()))
    with pytest.raises(ValueError, match="holds 16-bit codes, expected 32"):
        code_arrays(table, 32, source="x.parquet")
