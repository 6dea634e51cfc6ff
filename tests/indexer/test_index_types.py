"""Index-type adapters (ivf, flat, hnsw) against a numpy brute-force oracle, ties by (distance, id).

Short codes (16 bits) make ties the rule, so an order that is not exactly ``(distance, id)`` —
or a top-k that keeps the wrong one of two tied ids — fails these tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.index_types import (
    MISSING_DISTANCE,
    create_index_type,
    get_index_type,
    list_index_types,
)
from indexer.index_types.scan import scan_lists, to_words
from indexer.synthetic_codes import clustered_codes, uniform_codes


def hamming(q: np.ndarray, db: np.ndarray) -> np.ndarray:
    """``int64[nq, n]`` Hamming distances by numpy popcount (the oracle)."""
    return np.unpackbits(q[:, None, :] ^ db[None, :, :], axis=2).sum(axis=2).astype(np.int64)


def oracle_topk(
    q: np.ndarray, db: np.ndarray, ids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``(distance, id)`` top-k, padded with ``-1`` / ``MISSING_DISTANCE``."""
    dist = hamming(q, db)
    order = np.lexsort((np.broadcast_to(ids, dist.shape), dist), axis=1)[:, :k]
    d = np.take_along_axis(dist, order, axis=1)
    i = ids[order]
    pad = k - d.shape[1]
    if pad > 0:
        d = np.pad(d, ((0, 0), (0, pad)), constant_values=MISSING_DISTANCE)
        i = np.pad(i, ((0, 0), (0, pad)), constant_values=-1)
    return d, i


def data(n: int, n_bits: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clustered codes, shuffled sparse ids (so id order is not insertion order), queries."""
    rng = np.random.default_rng(seed)
    codes = clustered_codes(n + 40, n_bits, n_centres=12, flip=0.1, seed=seed)
    ids = rng.choice(10**9, size=n, replace=False).astype(np.int64)
    return codes[:n], ids, codes[n:]


def built(name: str, codes: np.ndarray, ids: np.ndarray, **params: object):  # type: ignore[no-untyped-def]
    ix = create_index_type(name, codes.shape[1] * 8, **params)
    ix.train(codes)
    ix.add(codes, ids)
    return ix


def test_registry_and_params_validation() -> None:
    assert list_index_types() == ["flat", "hnsw", "ivf"]
    assert [get_index_type(n).can_remove for n in ("flat", "hnsw", "ivf")] == [True, False, True]
    with pytest.raises(ValueError, match="index_type must be one of"):
        create_index_type("annoy", 64)
    with pytest.raises(ValueError, match=r"IvfParams\.nlist"):
        create_index_type("ivf", 64, nlist=0)
    with pytest.raises(ValueError, match=r"IvfParams\.quantizer"):
        create_index_type("ivf", 64, quantizer="pq")
    with pytest.raises(ValueError, match=r"HnswParams\.M"):
        create_index_type("hnsw", 64, M=1)
    with pytest.raises(ValueError, match=r"HnswParams\.ef_construction"):
        create_index_type("hnsw", 64, ef_construction=0)
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['nprobe'\]"):
        create_index_type("flat", 64, nprobe=3)
    with pytest.raises(ValueError, match="n_bits"):
        create_index_type("flat", 12)
    codes, ids, q = data(200, 32)
    ix = built("ivf", codes, ids, nlist=4)
    with pytest.raises(TypeError, match=r"no search parameter\(s\) \['ef_search'\]"):
        ix.search(q, 5, ef_search=10)
    with pytest.raises(ValueError, match="nprobe"):
        ix.search(q, 5, nprobe=0)
    with pytest.raises(ValueError, match="k must be"):
        ix.search(q, 0)
    with pytest.raises(ValueError, match=r"codes must be uint8\[n, 4\]"):
        ix.search(q[:, :2], 5)
    with pytest.raises(ValueError, match="ids"):
        ix.add(codes[:3], np.array([1, 2]))


@pytest.mark.parametrize("n_bits", [16, 64, 128, 200])
@pytest.mark.parametrize("name", ["flat", "ivf"])
def test_exact_types_equal_brute_force_with_ties(name: str, n_bits: int) -> None:
    codes, ids, q = data(1500, n_bits, seed=n_bits)
    ix = built(name, codes, ids, **({"nlist": 8} if name == "ivf" else {}))
    for k in (1, 10, 37):
        want = oracle_topk(q, codes, ids, k)
        # ivf: an omitted nprobe with no recorded default scans every list, i.e. exact
        got = ix.search(q, k)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        got2 = ix.search(q, k, threads=2)
        np.testing.assert_array_equal(got2[1], want[1])


def test_k_beyond_ntotal_pads() -> None:
    codes, ids, q = data(30, 64)
    for name in ("flat", "ivf", "hnsw"):
        ix = built(name, codes, ids, **({"nlist": 2} if name == "ivf" else {}))
        d, i = ix.search(q[:3], 50, **({"ef_search": 64} if name == "hnsw" else {}))
        assert d.shape == (3, 50) and d.dtype == np.int32 and i.dtype == np.int64
        assert (i[:, 30:] == -1).all() and (d[:, 30:] == MISSING_DISTANCE).all()
        assert sorted(i[0, :30].tolist()) == sorted(ids.tolist()), name


def test_ivf_below_nlist_equals_the_probed_set_and_a_global_faiss_ivf() -> None:
    """At ``nprobe < nlist`` the adapter returns exactly the ``(distance, id)`` top-k of the codes
    in the lists FAISS's quantizer picks, and the same distances as a FAISS ``IndexBinaryIVF``."""
    import faiss

    codes, ids, q = data(3000, 32, seed=7)
    ix = built("ivf", codes, ids, nlist=24, seed=3)
    ivf = ix.faiss_index()
    glob = faiss.clone_binary_index(ivf)  # one global FAISS index, same quantizer and lists
    quant = faiss.downcast_IndexBinary(ivf.quantizer)
    _, assign = quant.search(codes, 1)
    for nprobe in (1, 3, 7):
        for k in (10, 25):
            d, i = ix.search(q, k, nprobe=nprobe)
            _, probes = quant.search(q, nprobe)
            for r in range(len(q)):
                member = np.isin(assign[:, 0], probes[r])
                wd, wi = oracle_topk(q[r : r + 1], codes[member], ids[member], k)
                np.testing.assert_array_equal(d[r], wd[0])
                np.testing.assert_array_equal(i[r], wi[0])
            gd, gi = glob.search(q, k, params=faiss.SearchParametersIVF(nprobe=nprobe))
            np.testing.assert_array_equal(np.sort(d, axis=1), np.sort(gd, axis=1))
            np.testing.assert_array_equal((i >= 0), (gi >= 0))


def test_hnsw_is_ordered_and_near_exact() -> None:
    codes, ids, q = data(2000, 64, seed=5)
    ix = built("hnsw", codes, ids, M=16, ef_construction=64)
    k = 10
    want_d, _ = oracle_topk(q, codes, ids, k)
    truth = dict(zip(ids.tolist(), range(len(ids)), strict=True))
    d, i = ix.search(q, k, ef_search=256)
    dist = hamming(q, codes)
    for r in range(len(q)):
        pairs = list(zip(d[r].tolist(), i[r].tolist(), strict=True))
        assert pairs == sorted(pairs)  # (distance, id) order
        assert [int(dist[r, truth[j]]) for j in i[r]] == d[r].tolist()  # true distances
    recall = float((d <= want_d[:, -1:]).mean())
    assert recall >= 0.95
    low = ix.search(q, k, ef_search=1)[0]
    assert float((low <= want_d[:, -1:]).mean()) <= recall
    ix.search_defaults = {"ef_search": 256}
    np.testing.assert_array_equal(ix.search(q, k)[0], d)


@pytest.mark.parametrize("name", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(name: str, tmp_path: Path) -> None:
    codes, ids, q = data(800, 64, seed=1)
    ix = built(name, codes, ids, **({"nlist": 6} if name == "ivf" else {}))
    params = {"ef_search": 64} if name == "hnsw" else {"nprobe": 2} if name == "ivf" else {}
    want = ix.search(q, 10, **params)
    uri = str(tmp_path / f"{name}.faissbin")
    sha, nbytes = ix.save(uri)
    assert nbytes == Path(uri).stat().st_size and len(sha) == 64
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # atomic: no temp left
    cls = get_index_type(name)
    for mmap in (False, True):
        back = cls.load(uri, sha256=sha, mmap=mmap)
        assert back.ntotal == 800 and back.params == ix.params
        got = back.search(q, 10, **params)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    with pytest.raises(ValueError, match="sha256 mismatch"):
        cls.load(uri, sha256="0" * 64)
    other = "ivf" if name != "ivf" else "flat"
    with pytest.raises(ValueError, match="expected an"):
        get_index_type(other).load(uri)


@pytest.mark.parametrize("name", ["flat", "ivf", "hnsw"])
def test_remove_per_type(name: str) -> None:
    codes, ids, q = data(500, 32, seed=2)
    ix = built(name, codes, ids, **({"nlist": 4} if name == "ivf" else {}))
    gone = ids[::5]
    if not ix.can_remove:
        with pytest.raises(ValueError, match=f"index type '{name}' cannot remove ids"):
            ix.remove(gone)
        assert ix.ntotal == 500
        return
    ix.search(q, 5)  # builds the scan array; remove must invalidate it
    assert ix.remove(gone) == len(gone)
    keep = ~np.isin(ids, gone)
    want = oracle_topk(q, codes[keep], ids[keep], 12)
    got = ix.search(q, 12)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    # and add after remove
    ix.add(codes[~keep], gone)
    np.testing.assert_array_equal(ix.search(q, 12)[1], oracle_topk(q, codes, ids, 12)[1])


def test_scan_kernel_skips_empty_probes() -> None:
    codes, ids, q = data(100, 64)
    words = to_words(codes)
    offsets = np.array([0, 40, 100], dtype=np.int64)
    probes = np.array([[1, -1]] * len(q), dtype=np.int64)
    d, i = scan_lists(words, ids, offsets, to_words(q), probes, 5)
    want = oracle_topk(q, codes[40:], ids[40:], 5)
    np.testing.assert_array_equal(d, want[0])
    np.testing.assert_array_equal(i, want[1])


def test_uniform_flat_memory_and_merge() -> None:
    from indexer.index_types.flat import FlatIndex
    from indexer.index_types.ivf import IvfIndex

    codes = uniform_codes(900, 64, seed=4)
    ids = np.arange(900, dtype=np.int64) * 3
    parts = [built("flat", codes[s::3], ids[s::3]) for s in range(3)]
    merged = FlatIndex.merged(parts)
    assert merged.ntotal == 900 and merged.memory_bytes >= 900 * (8 + 8)
    q = codes[:7]
    np.testing.assert_array_equal(merged.search(q, 9)[1], oracle_topk(q, codes, ids, 9)[1])
    one = built("ivf", codes, ids, nlist=5)
    shards = []
    for s in range(3):
        part = IvfIndex.from_faiss(
            __import__("faiss").clone_binary_index(one.faiss_index()), one.params
        )
        part.remove(ids[np.arange(900) % 3 != s])
        shards.append(part)
    joined = IvfIndex.merged(shards)
    for nprobe in (1, 2, 5):
        a, b = joined.search(q, 9, nprobe=nprobe), one.search(q, 9, nprobe=nprobe)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    other = built("ivf", codes, ids, nlist=5, seed=9)
    with pytest.raises(ValueError, match="another quantizer"):
        IvfIndex.merged([one, other])


def test_flat_tiles_and_single_queries_equal_brute_force() -> None:
    """Past one 8192-row tile and many 1024-row chunks; batch (tiled) and one query at a time."""
    codes, ids, q = data(9000, 24, seed=11)
    ix = built("flat", codes, ids)
    want = oracle_topk(q, codes, ids, 12)
    got = ix.search(q, 12)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    for r in range(0, len(q), 7):
        _, i = ix.search(q[r : r + 1], 12)
        np.testing.assert_array_equal(i[0], want[1][r])
