"""``odh build --index-type auto``: the type chosen by measurement on a sample, recorded in the
manifest, and the built index answering at the target recall (numpy brute-force oracle)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from indexer.build import BuildConfig, build
from indexer.build_auto import FLAT_MAX_N, choose_index_type
from indexer.codes import write_code_set
from indexer.manifest import Manifest, read_manifest
from indexer.search import open_index
from indexer.synthetic_codes import clustered_codes, uniform_codes
from odh_core.packing import hamming_distances

TARGET = 0.95


def oracle_recall(db: np.ndarray, queries: np.ndarray, got_d: np.ndarray, k: int) -> float:
    """Tie-aware recall@k: a hit counts if its true distance is at most the true k-th one."""
    dist = hamming_distances(queries, db)
    kth = np.sort(dist, axis=1)[:, k - 1 : k]
    return float((np.asarray(got_d) <= kth).sum() / (len(queries) * k))


def write_codes(root: Path, codes: np.ndarray) -> str:
    ids = np.arange(len(codes), dtype=np.int64) * 3 + 1
    return write_code_set(str(root), ids, codes, codes.shape[1] * 8)


def test_small_sets_are_flat_without_measuring() -> None:
    codes = uniform_codes(FLAT_MAX_N, 64, seed=0)
    choice = choose_index_type(codes, target_recall=TARGET)
    assert choice.index_type == "flat" and choice.candidates == () and choice.sample_n == 0
    assert str(FLAT_MAX_N) in choice.reason


def test_clustered_codes_choose_ivf() -> None:
    codes = clustered_codes(20_000, 64, n_centres=64, flip=0.05, seed=0)
    choice = choose_index_type(codes, target_recall=TARGET, seed=0)
    assert choice.index_type == "ivf", choice.reason
    by_type = {(c.index_type, c.params.get("M")): c for c in choice.candidates}
    assert choice.params == {}  # nlist: the build's rule at the full n
    assert set(by_type) == {("flat", None), ("ivf", None), ("hnsw", 16), ("hnsw", 32)}
    ivf = by_type[("ivf", None)]
    # IVF reaches the target with few probes of its 512 lists
    assert ivf.meets_target and ivf.search_defaults["nprobe"] <= 8 and ivf.params["nlist"] == 512
    assert by_type[("flat", None)].recall_at_10 == 1.0
    record = choice.to_json()
    assert record["index_type"] == "ivf" and len(record["candidates"]) == 4


def test_choice_validates_inputs() -> None:
    with pytest.raises(ValueError, match="target_recall"):
        choose_index_type(uniform_codes(10, 64, 0), target_recall=1.5)
    with pytest.raises(ValueError, match="no codes"):
        choose_index_type(uniform_codes(0, 64, 0), target_recall=0.9)
    with pytest.raises(ValueError, match="auto_sample"):
        BuildConfig(index_type="auto", auto_sample=0)
    with pytest.raises(ValueError, match="index_type must be one of"):
        BuildConfig(index_type="annoy")


def test_old_manifests_load_without_auto_choice() -> None:
    m = Manifest.from_json(
        {
            "format_version": 2, "n_bits": 64, "nlist": 1, "metric": "hamming", "generation": 1,
            "quantizer": {"file": None, "sha256": None},
            "shards": [{"shard": 0, "file": "a", "sha256": "x", "meta_file": "b",
                        "meta_sha256": "y", "ntotal": 1}],
            "index": {"type": "flat", "params": {}, "search_defaults": {}},
        }
    )  # fmt: skip
    assert m.auto_choice is None and m.index_type == "flat"


@pytest.fixture(scope="module")
def uniform_auto(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> tuple:
    """Uniform random codes (IVF needs most of its lists there) built with ``auto``."""
    root = tmp_path_factory.mktemp("auto")
    codes = uniform_codes(20_000, 64, seed=3)
    out = str(root / "index")
    manifest = build(write_codes(root / "codes", codes), out, n_shards=2, index_type="auto")
    return out, manifest, codes


def test_uniform_codes_choose_no_ivf_and_answer_at_the_target(uniform_auto: tuple) -> None:
    out, manifest, codes = uniform_auto
    assert read_manifest(out) == manifest
    choice = manifest.auto_choice
    assert choice is not None and manifest.index_type == choice["index_type"]
    assert manifest.index_type in ("flat", "hnsw"), choice["reason"]
    ivf = next(c for c in choice["candidates"] if c["index_type"] == "ivf")
    chosen = max(c["qps_projected"] for c in choice["candidates"] if c["meets_target"])
    assert ivf["qps_projected"] < chosen  # IVF reached the target only at a high nprobe
    assert manifest.build_config["index_type"] == manifest.index_type
    queries = uniform_codes(50, 64, seed=99)
    d, _ = open_index(out).search(queries, 10)  # the manifest's search defaults
    assert oracle_recall(codes, queries, d, 10) >= TARGET


@pytest.fixture(scope="module")
def served(uniform_auto: tuple, free_port: Callable[[], int]) -> Iterator[str]:
    from serving.app import start_server, stop_server

    url = start_server(uniform_auto[0], port=free_port(), groups=1)
    try:
        yield url
    finally:
        stop_server()


@pytest.mark.e2e
def test_auto_index_is_served_at_the_target(served: str, uniform_auto: tuple) -> None:
    """build(auto) → serve → query: the server reads the chosen type and its search default."""
    from serving.client import ODHClient

    codes = uniform_auto[2]
    queries = uniform_codes(30, 64, seed=7)
    with ODHClient(served, timeout=60) as client:
        stats = client.stats()
        assert stats["ntotal"] == len(codes)
        result = client.search(codes=queries, k=10)
    d = np.array([[h.distance for h in hits] for hits in result.results])
    assert oracle_recall(codes, queries, d, 10) >= TARGET
