"""Resumable builds, append, delete and the HNSW quantizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.build import BuildConfig, build
from indexer.build_state import marker_uri
from indexer.codes import write_code_set
from indexer.index_gc import collect_garbage
from indexer.manifest import read_manifest
from indexer.search import open_index
from indexer.shard_io import FAIL_ENV
from indexer.synthetic_codes import clustered_codes
from indexer.update import append, delete, read_id_file
from odh_core.packing import hamming_distances

N_BITS = 32


def _codes_dir(root: Path, ids: np.ndarray, codes: np.ndarray) -> str:
    return write_code_set(str(root), ids, codes, N_BITS)  # id + code only


def _codes(n: int, seed: int) -> np.ndarray:
    return clustered_codes(n, N_BITS, n_centres=8, flip=0.1, seed=seed)


def _search_equals_brute_force(index_dir: str, ids: np.ndarray, codes: np.ndarray) -> None:
    manifest = read_manifest(index_dir)
    assert manifest.ntotal == len(ids)
    queries = np.concatenate([codes[:5], _codes(10, seed=99)])
    k = 15
    dist, idx = open_index(index_dir).search(queries, k, nprobe=manifest.nlist)
    true = hamming_distances(queries, codes)
    np.testing.assert_array_equal(dist, np.sort(true, axis=1)[:, :k])
    pos = {int(i): j for j, i in enumerate(ids)}
    for q in range(len(queries)):
        assert [true[q, pos[int(i)]] for i in idx[q]] == dist[q].tolist()


def test_resume_after_failed_shard(
    tmp_path: Path, ray_local: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = np.arange(2000, dtype=np.int64) * 3
    codes = _codes(2000, seed=1)
    codes_dir = _codes_dir(tmp_path / "codes", ids, codes)
    cfg = BuildConfig(n_shards=4, nlist=8, seed=3)
    clean = build(codes_dir, str(tmp_path / "clean"), config=cfg)

    index_dir = tmp_path / "index"
    monkeypatch.setenv(FAIL_ENV, "2")
    with pytest.raises(RuntimeError, match=r"shard 2: .*injected failure.*rerun"):
        build(codes_dir, str(index_dir), config=cfg)
    assert not (index_dir / "manifest.json").exists()  # a reader never sees a half-built index
    assert not Path(marker_uri(str(index_dir), 2)).exists()
    gen1 = index_dir / "gen-000001"
    done = {s: (gen1 / f"shard-{s:05d}.faissbin").stat().st_mtime_ns for s in (0, 1, 3)}
    quantizer_mtime = (gen1 / "quantizer.faissbin").stat().st_mtime_ns

    monkeypatch.delenv(FAIL_ENV)
    resumed = build(codes_dir, str(index_dir), config=cfg)
    # finished shards and the quantizer were reused, not rebuilt
    for s, mtime in done.items():
        assert (gen1 / f"shard-{s:05d}.faissbin").stat().st_mtime_ns == mtime
    assert (gen1 / "quantizer.faissbin").stat().st_mtime_ns == quantizer_mtime
    assert resumed.generation == 1  # the unpublished generation was finished, not skipped
    # and the result equals a clean build
    assert [e.sha256 for e in resumed.shards] == [e.sha256 for e in clean.shards]
    assert [e.meta_sha256 for e in resumed.shards] == [e.meta_sha256 for e in clean.shards]
    assert resumed.quantizer_sha256 == clean.quantizer_sha256
    _search_equals_brute_force(str(index_dir), ids, codes)

    # a different config does not reuse anything
    other = build(codes_dir, str(index_dir), config=BuildConfig(n_shards=4, nlist=8, seed=4))
    assert other.quantizer_sha256 != clean.quantizer_sha256
    # a rebuild in place writes the next generation and leaves the served one untouched
    assert other.generation == 2 and other.quantizer_file.startswith("gen-000002/")
    for s, mtime in done.items():
        assert (gen1 / f"shard-{s:05d}.faissbin").stat().st_mtime_ns == mtime


def test_append_and_delete(tmp_path: Path, ray_local: None) -> None:
    ids = np.arange(1500, dtype=np.int64)
    codes = _codes(1500, seed=2)
    index_dir = str(tmp_path / "index")
    first = build(_codes_dir(tmp_path / "c1", ids, codes), index_dir, n_shards=3,
                  nlist=8)  # fmt: skip
    assert first.generation == 1 and first.deleted_count == 0

    new_ids = np.arange(5000, 5600, dtype=np.int64)
    new_codes = _codes(600, seed=3)
    second = append(_codes_dir(tmp_path / "c2", new_ids, new_codes), index_dir)
    assert second.generation == 2 and second.ntotal == 2100
    assert second.quantizer_sha256 == first.quantizer_sha256
    all_ids, all_codes = np.concatenate([ids, new_ids]), np.concatenate([codes, new_codes])
    _search_equals_brute_force(index_dir, all_ids, all_codes)

    dup_dir = _codes_dir(tmp_path / "c3", np.array([7, 8, 9999]), _codes(3, 4))
    with pytest.raises(ValueError, match=r"2 id\(s\) are already in the index.*\[7, 8\]"):
        append(dup_dir, index_dir)
    assert read_manifest(index_dir).generation == 2  # nothing changed

    gone = np.array([0, 5, 5001, 1499], dtype=np.int64)
    id_file = tmp_path / "ids.txt"
    id_file.write_text("0, 5  # first two\n5001\n1499\n")
    np.testing.assert_array_equal(read_id_file(str(id_file)), gone)
    third = delete(index_dir, read_id_file(str(id_file)))
    assert third.generation == 3 and third.ntotal == 2096
    assert third.deleted_ids == (0, 5, 1499, 5001) and third.deleted_count == 4
    keep = ~np.isin(all_ids, gone)
    _search_equals_brute_force(index_dir, all_ids[keep], all_codes[keep])
    with pytest.raises(ValueError, match=r"not in the index.*\[5\]"):
        delete(index_dir, [5])
    # updates delete nothing; gc keeps the two newest generations' files, then only the current
    assert sorted(p.name for p in Path(index_dir).glob("gen-*")) == [
        "gen-000001",
        "gen-000002",
        "gen-000003",
    ]
    report = collect_garbage(index_dir, keep=2, dry_run=False)
    assert report.kept == (2, 3) and report.current == 3
    assert all(Path(index_dir, e.file).exists() for e in third.shards)
    collect_garbage(index_dir, keep=1, dry_run=False)
    left = {str(p.relative_to(index_dir)) for p in Path(index_dir).glob("gen-*/*")}
    named = {third.quantizer_file, *(f for e in third.shards for f in (e.file, e.meta_file))}
    assert left == named | {"gen-000003/manifest.json"}
    _search_equals_brute_force(index_dir, all_ids[keep], all_codes[keep])


def test_hnsw_quantizer_exact_search(tmp_path: Path, ray_local: None) -> None:
    ids = np.arange(1200, dtype=np.int64)
    codes = _codes(1200, seed=5)
    index_dir = str(tmp_path / "index")
    cfg = BuildConfig(n_shards=2, nlist=16, quantizer="hnsw", hnsw_m=8)
    manifest = build(_codes_dir(tmp_path / "c", ids, codes), index_dir, config=cfg)
    assert manifest.build_config["quantizer"] == "hnsw"
    _search_equals_brute_force(index_dir, ids, codes)
    with pytest.raises(ValueError, match="quantizer must be one of"):
        BuildConfig(quantizer="ivf")
