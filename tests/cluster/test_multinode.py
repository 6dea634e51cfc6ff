"""Beyond one machine: a head and two worker nodes run encode + build and serve two searcher groups;
losing a node gives partial answers naming its group, a replacement node heals them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

SCENARIO = Path(__file__).with_name("multinode_scenario.py")


@pytest.fixture(scope="module")
def scenario(
    tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int]
) -> tuple[dict, Path]:
    work = tmp_path_factory.mktemp("multinode")
    proc = subprocess.run(
        [sys.executable, str(SCENARIO), str(work), str(free_port())],
        capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"scenario failed:\n{proc.stdout}\n{proc.stderr[-6000:]}"
    return json.loads(lines[-1][len("RESULT ") :]), work


def test_jobs_ran_on_several_nodes(scenario: tuple[dict, Path]) -> None:
    result, _ = scenario
    assert result["nodes"] == 3
    assert result["encoded"] == 48
    assert len(set(result["encode_nodes"]) | set(result["build_nodes"])) > 1


def test_multinode_index_equals_single_node_build(
    scenario: tuple[dict, Path], ray_local: None, tmp_path: Path
) -> None:
    from indexer.build import build
    from indexer.codes import code_arrays, read_codes
    from indexer.manifest import read_manifest
    from indexer.search import open_index
    from indexer.shards import load_meta

    _, work = scenario
    single = build(str(work / "codes"), str(tmp_path / "index"), n_shards=2, nlist=4, seed=0)
    multi = read_manifest(str(work / "index"))
    assert [s.ntotal for s in single.shards] == [s.ntotal for s in multi.shards]
    for a, b in zip(single.shards, multi.shards, strict=True):
        ids_a = load_meta(str(tmp_path / "index"), a).column("id").to_numpy()
        ids_b = load_meta(str(work / "index"), b).column("id").to_numpy()
        np.testing.assert_array_equal(np.sort(ids_a), np.sort(ids_b))
    _, codes = code_arrays(read_codes(str(work / "codes")), 16)
    da, ia = open_index(str(tmp_path / "index")).search(codes[:8], 10, nprobe=4)
    db, ib = open_index(str(work / "index")).search(codes[:8], 10, nprobe=4)
    np.testing.assert_array_equal(da, db)
    np.testing.assert_array_equal(ia, ib)


def test_losing_a_node_gives_partial_answers_then_heals(scenario: tuple[dict, Path]) -> None:
    from indexer.shards import shard_of

    result, _ = scenario
    assert len(result["partial_missing_groups"]) == 1
    lost = result["partial_missing_groups"][0]  # groups = shards here (2 shards, 2 groups)
    for partial in result["partial_ids"]:
        assert partial, "the surviving group still answers"
        assert not np.any(shard_of(np.array(partial, dtype=np.int64), 2) == lost)
    assert result["full_after"] == result["full_before"]
