"""The one search path (``indexer.search``): built index directories of every type, end to end.

Sharded equals unsharded and equals one global FAISS IVF below exhaustive settings; the
manifest records type, parameters and the measured search default, which ``ShardGroup`` (the
serving searcher) applies when a request omits it; append / delete per type, or the refusal;
format-1 manifests still load as ivf.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from indexer.build import build
from indexer.codes import write_code_set
from indexer.index_types import MISSING_DISTANCE
from indexer.manifest import Manifest, read_manifest
from indexer.search import merge_topk, open_index, recommend_search_defaults
from indexer.shards import load_quantizer
from indexer.synthetic_codes import clustered_codes

N_BITS = 32
N = 2400
FIXTURES = Path(__file__).parent.parent / "fixtures" / "formats_v1"


def oracle_topk(
    q: np.ndarray, db: np.ndarray, ids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``(distance, id)`` top-k by numpy popcount."""
    dist = np.unpackbits(q[:, None, :] ^ db[None, :, :], axis=2).sum(axis=2).astype(np.int64)
    order = np.lexsort((np.broadcast_to(ids, dist.shape), dist), axis=1)[:, :k]
    return np.take_along_axis(dist, order, axis=1), ids[order]


@pytest.fixture(scope="module")
def code_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, np.ndarray, np.ndarray]:
    root = tmp_path_factory.mktemp("codes")
    rng = np.random.default_rng(0)
    ids = rng.choice(10**8, size=N, replace=False).astype(np.int64)
    codes = clustered_codes(N, N_BITS, n_centres=16, flip=0.1, seed=1)
    path = write_code_set(
        str(root / "codes"), ids, codes, N_BITS,
        keys=[f"k/{i}" for i in ids], labels=[[int(i) % 7] for i in ids],
        splits=["database"] * N,
    )  # fmt: skip
    return path, ids, codes


def queries() -> np.ndarray:
    return clustered_codes(40, N_BITS, n_centres=16, flip=0.1, seed=1)[:40] ^ np.uint8(1)


def test_sharded_equals_unsharded_and_a_global_ivf(
    code_set: tuple, tmp_path: Path, ray_local: None
) -> None:
    import faiss

    path, ids, codes = code_set
    one = build(path, str(tmp_path / "one"), n_shards=1, nlist=20, seed=4)
    four = build(path, str(tmp_path / "four"), n_shards=4, nlist=20, seed=4)
    assert one.quantizer_sha256 == four.quantizer_sha256  # same seeded training
    a, b = open_index(str(tmp_path / "one")), open_index(str(tmp_path / "four"))
    assert a.ntotal == b.ntotal == N and b.shard_ntotal == [e.ntotal for e in four.shards]
    glob = load_quantizer(str(tmp_path / "four"), four)
    glob.add_with_ids(codes, ids)
    q = queries()
    for nprobe in (1, 2, 5, 20):
        for k in (1, 10, 30):
            da, ia = a.search(q, k, nprobe=nprobe)
            db, ib = b.search(q, k, nprobe=nprobe, threads=2)
            np.testing.assert_array_equal(da, db)
            np.testing.assert_array_equal(ia, ib)
            gd, _ = glob.search(q, k, params=faiss.SearchParametersIVF(nprobe=nprobe))
            np.testing.assert_array_equal(np.sort(da, axis=1), np.sort(gd, axis=1))
    exact = oracle_topk(q, codes, ids, 15)
    got = b.search(q, 15, nprobe=20)
    np.testing.assert_array_equal(got[0], exact[0])
    np.testing.assert_array_equal(got[1], exact[1])


@pytest.mark.parametrize("index_type", ["ivf", "flat", "hnsw"])
def test_build_serve_query_each_type(
    index_type: str, code_set: tuple, tmp_path: Path, ray_local: None
) -> None:
    from serving.searcher import ShardGroup

    path, ids, codes = code_set
    out = str(tmp_path / index_type)
    m = build(path, out, n_shards=3, nlist=12, seed=0, index_type=index_type, graph_m=16)
    assert read_manifest(out) == m and m.index_type == index_type
    if index_type == "ivf":
        assert m.index_params["nlist"] == 12 and m.quantizer_file is not None
        assert set(m.search_defaults) == {"nprobe"} and 1 <= m.search_defaults["nprobe"] <= 12
    elif index_type == "hnsw":
        assert m.index_params == {"M": 16, "ef_construction": 40} and m.quantizer_file is None
        assert set(m.search_defaults) == {"ef_search"}
    else:
        assert m.index_params == {} and m.search_defaults == {} and m.nlist == 1
    if m.search_defaults:
        assert m.build_config["search_default_recall_at_10"] >= 0.95
    group = ShardGroup(out, [0, 1, 2], num_threads=1)
    assert group.stats()["index_type"] == index_type
    q = queries()
    want_d, want_i = oracle_topk(q, codes, ids, 10)
    # exhaustive where the type has a knob for it; the served default otherwise
    hits = group.search(q, 10, nprobe=12 if index_type == "ivf" else None)
    if index_type == "hnsw":
        assert float((hits.distances <= want_d[:, -1:]).mean()) >= 0.9
    else:
        np.testing.assert_array_equal(hits.distances, want_d)
        np.testing.assert_array_equal(hits.ids, want_i)
    keys = hits.keys.to_pylist()
    assert keys[:10] == [f"k/{i}" for i in hits.ids[0].tolist()]
    # an omitted nprobe is the recorded default, not an exhaustive scan
    if index_type == "ivf":
        default = group.search(q, 10)
        same = group.search(q, 10, nprobe=m.search_defaults["nprobe"])
        np.testing.assert_array_equal(default.ids, same.ids)


def test_search_defaults_are_measured_and_optional(
    code_set: tuple, tmp_path: Path, ray_local: None
) -> None:
    path, _, codes = code_set
    m = build(path, str(tmp_path / "none"), n_shards=2, nlist=12, target_recall=0.0)
    assert m.search_defaults == {}
    index = open_index(str(tmp_path / "none"))
    assert index.search_defaults == {}
    strict, recall = recommend_search_defaults(index, codes, target_recall=1.0)
    loose, low = recommend_search_defaults(index, codes, target_recall=0.5)
    assert strict["nprobe"] >= loose["nprobe"] and recall >= low >= 0.5
    assert recall == 1.0 or strict["nprobe"] == 12
    with pytest.raises(ValueError, match="target_recall"):
        build(path, str(tmp_path / "bad"), target_recall=1.5)
    with pytest.raises(ValueError, match="index_type must be one of"):
        build(path, str(tmp_path / "bad"), index_type="annoy")


@pytest.mark.parametrize("index_type", ["ivf", "flat", "hnsw"])
def test_append_and_delete_per_type(index_type: str, tmp_path: Path, ray_local: None) -> None:
    from indexer.update import append, delete

    ids = np.arange(600, dtype=np.int64) * 11
    codes = clustered_codes(900, N_BITS, n_centres=6, flip=0.1, seed=3)
    first = write_code_set(str(tmp_path / "a"), ids[:500], codes[:500], N_BITS)
    more = write_code_set(str(tmp_path / "b"), ids[500:], codes[500:600], N_BITS)
    out = str(tmp_path / "index")
    build(first, out, n_shards=2, nlist=4, index_type=index_type, target_recall=0.0)
    m = append(more, out)
    assert m.ntotal == 600 and m.index_type == index_type and m.generation == 2
    q = codes[600:620]
    got = open_index(out).search(q, 8, **({"nprobe": 4} if index_type == "ivf" else {}))
    want = oracle_topk(q, codes[:600], ids, 8)
    if index_type == "hnsw":
        assert float((got[0] <= want[0][:, -1:]).mean()) >= 0.9
    else:
        np.testing.assert_array_equal(got[1], want[1])
    gone = ids[:600:7]
    if index_type == "hnsw":
        with pytest.raises(ValueError, match="type 'hnsw', which cannot remove ids"):
            delete(out, gone)
        assert read_manifest(out).generation == 2  # nothing written
        return
    m = delete(out, gone)
    assert m.ntotal == 600 - len(gone) and m.deleted_count == len(gone)
    keep = ~np.isin(ids, gone)
    got = open_index(out).search(q, 8, **({"nprobe": 4} if index_type == "ivf" else {}))
    want = oracle_topk(q, codes[:600][keep], ids[keep], 8)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_format_1_manifest_loads_as_ivf(code_set: tuple, tmp_path: Path, ray_local: None) -> None:
    fixture = Manifest.from_json(json.loads((FIXTURES / "manifest.json").read_text()))
    assert fixture.index_type == "ivf" and fixture.search_defaults == {}
    # a real index whose manifest is rewritten as format 1 (no index block) still searches
    path, ids, codes = code_set
    out = tmp_path / "old"
    m = build(path, str(out), n_shards=2, nlist=8, seed=0)
    obj = json.loads((out / "manifest.json").read_text())
    assert obj["format_version"] == 2 and obj["index"]["type"] == "ivf"
    del obj["index"]
    obj["format_version"] = 1
    (out / "manifest.json").write_text(json.dumps(obj))
    old = read_manifest(str(out))
    assert old.index_type == "ivf" and old.search_defaults == {} and old.shards == m.shards
    q = queries()
    got = open_index(str(out)).search(q, 10)  # no default recorded: every list, exact
    want = oracle_topk(q, codes, ids, 10)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    # a shard file of the wrong type is named
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    obj["format_version"], obj["index"] = 2, {"type": "flat", "params": {}}
    (bad / "manifest.json").write_text(json.dumps(obj))
    with pytest.raises(ValueError, match="index type 'flat'"):
        open_index(str(bad))


def test_merge_topk_groups() -> None:
    d = [np.array([[1, 3, MISSING_DISTANCE]], np.int32), np.array([[1, 2]], np.int32)]
    i = [np.array([[9, 4, -1]]), np.array([[5, 8]])]
    got_d, got_i = merge_topk(d, i, 4)
    assert got_d.tolist() == [[1, 1, 2, 3]] and got_i.tolist() == [[5, 9, 8, 4]]
    got_d, got_i = merge_topk(d[:1], i[:1], 4)
    assert got_i.tolist() == [[9, 4, -1, -1]] and got_d[0, 2] == MISSING_DISTANCE
