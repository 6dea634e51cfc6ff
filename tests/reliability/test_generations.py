"""Index generations that mean something (issue 14): an in-place rebuild writes a new generation
and never touches the served one; searchers load exactly the generation (and manifest digest)
asked for, also after a restart; answers of different generations are never merged; reload and
replica / ingress restarts converge on the one current manifest; gc keeps the current generation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.build import build
from indexer.codes import write_code_set
from indexer.index_gc import collect_garbage
from indexer.manifest import (
    StaleGeneration,
    load_manifest,
    read_manifest,
    write_manifest,
)
from indexer.synthetic_codes import uniform_codes
from odh_core.packing import hamming_distances

N_BITS = 32
N_DB = 160
NLIST = 4
TOKEN = "generations-test-token"


def _codes_dir(root: Path, seed: int) -> tuple[str, np.ndarray, np.ndarray]:
    ids = np.arange(N_DB, dtype=np.int64) * 5 + seed
    codes = uniform_codes(N_DB, N_BITS, seed=seed)
    out = str(root / f"codes-{seed}")
    write_code_set(
        out, ids, codes, N_BITS, keys=[f"k{i}" for i in ids],
        labels=[[int(i) % 3] for i in ids], splits=["database"] * N_DB,
    )  # fmt: skip
    return out, ids, codes


def _want(db_codes: np.ndarray, db_ids: np.ndarray, queries: np.ndarray, k: int) -> list[list]:
    """Brute-force top-k ids by (Hamming distance, id)."""
    dist = hamming_distances(queries, db_codes)
    return [db_ids[np.lexsort((db_ids, row))[:k]].tolist() for row in dist]


def test_in_place_rebuild_writes_a_new_generation(tmp_path: Path, ray_local: None) -> None:
    index = tmp_path / "index"
    c1, ids1, codes1 = _codes_dir(tmp_path, 1)
    first = build(c1, str(index), n_shards=2, nlist=NLIST)
    digest1 = load_manifest(str(index)).digest
    files1 = {p: p.read_bytes() for p in (index / "gen-000001").rglob("*") if p.is_file()}

    c2, ids2, codes2 = _codes_dir(tmp_path, 2)
    second = build(c2, str(index), n_shards=2, nlist=NLIST)
    assert (first.generation, second.generation) == (1, 2)
    # rerunning the same build reuses everything and publishes nothing new
    assert build(c2, str(index), n_shards=2, nlist=NLIST) == second
    # the served generation's files were not touched, and its manifest is still readable
    assert {p: p.read_bytes() for p in files1} == files1
    old = load_manifest(str(index), generation=1, digest=digest1)
    assert old.manifest == first and read_manifest(str(index)) == second
    with pytest.raises(StaleGeneration, match="digest"):
        load_manifest(str(index), generation=2, digest=digest1)
    with pytest.raises(ValueError, match="generations only increase"):
        write_manifest(str(index), first)

    # a searcher (re)started after the rebuild still answers generation 1 exactly when asked
    from serving.layout import GroupSpec
    from serving.searcher import SearcherCore

    core = SearcherCore(str(index), [0, 1], 1)  # a restarted replica: current manifest
    assert core.stats()["generation"] == 2
    q = codes1[:4]
    hits1 = core.search(q, 5, NLIST, GroupSpec(str(index), (0, 1), 1, digest1))
    assert hits1.ids.tolist() == _want(codes1, ids1, q, 5)
    assert (hits1.generation, hits1.digest) == (1, digest1)
    hits2 = core.search(q, 5, NLIST)
    assert hits2.ids.tolist() == _want(codes2, ids2, q, 5) and hits2.generation == 2
    with pytest.raises(StaleGeneration):
        core.search(q, 5, NLIST, GroupSpec(str(index), (0, 1), 1, "0" * 64))

    # gc keeps the current generation (and, with keep=2, the one before); odh gc is a dry run
    # unless --yes
    from cluster.cli import main

    assert main(["gc", "--index", str(index), "--keep", "1"]) == 0
    assert (index / "gen-000001").exists()
    assert main(["gc", "--index", str(index), "--keep", "0"]) == 2  # refused, naming the field
    report = collect_garbage(str(index), keep=2)
    assert report.dry_run and report.files == () and report.kept == (1, 2)
    gone = collect_garbage(str(index), keep=1, dry_run=False)
    assert gone.removed_generations == (1,) and not (index / "gen-000001").exists()
    assert core.search(q, 5, NLIST).ids.tolist() == _want(codes2, ids2, q, 5)
    with pytest.raises(StaleGeneration, match="no longer available"):
        load_manifest(str(index), generation=1)


class _Group:
    """A fake searcher group answering from a fixed generation."""

    def __init__(self, generation: int, digest: str, ids: list[int]) -> None:
        from serving.searcher import GroupHits

        self.hits = GroupHits(
            np.array([[1] * len(ids)], np.int32),
            np.array([ids], np.int64),
            [[f"k{i}" for i in ids]],
            [[None] * len(ids)],
            generation,
            digest,
        )
        self.search = self

    def remote(self, *args: Any) -> Any:
        fut: asyncio.Future = asyncio.get_event_loop().create_future()
        fut.set_result(self.hits)
        fut.cancel = lambda: None  # type: ignore[method-assign]
        return fut


def test_answers_of_different_generations_are_never_merged() -> None:
    from serving.router import QueryRouter, SearchFailure
    from serving.schemas import SearchRequest

    info = {"n_bits": N_BITS, "generation": 2, "digest": "b" * 64}
    groups = [_Group(2, "b" * 64, [10, 11]), _Group(1, "a" * 64, [3, 4])]
    router = QueryRouter(None, groups, info)
    request = SearchRequest(codes=["00" * (N_BITS // 8)], k=4)
    response = asyncio.run(router.run_search(request))
    assert [h.id for h in response.results[0]] == [10, 11]  # group 1's old answer dropped
    assert response.partial and response.missing_groups == [1]
    # same number, other manifest: also stale
    groups[1] = _Group(2, "c" * 64, [3, 4])
    router = QueryRouter(None, groups, info)
    strict = SearchRequest(codes=["00" * (N_BITS // 8)], k=4, require_all=True)
    with pytest.raises(SearchFailure) as err:
        asyncio.run(router.run_search(strict))
    assert err.value.status_code == 503
    assert "different manifest of generation 2" in err.value.detail


# --- the served app: rebuild in place, reload, replica and ingress restarts -------------------


@pytest.fixture(scope="module")
def served(
    ray_local: None, tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int]
) -> Iterator[dict[str, Any]]:
    from serving.app import start_server, stop_server

    root = tmp_path_factory.mktemp("generations")
    c1, ids1, codes1 = _codes_dir(root, 1)
    index = str(root / "index")
    build(c1, index, n_shards=2, nlist=NLIST)
    url = start_server(
        index, port=free_port(), groups=2, num_cpus=0.2, timeout_s=3.0, admin_token=TOKEN
    )
    try:
        yield {"url": url, "root": root, "index": index, "ids": ids1, "codes": codes1}
    finally:
        stop_server()


def _kill(deployment: str) -> str:
    import ray

    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == "serve" and f"#{deployment}#" in a["name"]
    ]
    assert names, f"no replica of {deployment}"
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
    return names[0]


def _wait_for(client: Any, codes: np.ndarray, generation: int, timeout_s: float = 60) -> Any:
    """Search until a complete answer of ``generation`` comes back (bounded by time)."""
    from serving.client import ODHClientError

    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = client.search(codes=codes, k=5, nprobe=NLIST)
            if not last.partial and last.generation == generation:
                return last
        except ODHClientError as exc:  # the ingress itself restarting
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"no complete generation-{generation} answer in {timeout_s}s: {last}")


def test_rebuild_reload_and_restarts_converge_on_one_generation(served: dict[str, Any]) -> None:
    from serving.client import ODHClient

    root, index = served["root"], served["index"]
    q = served["codes"][:3]
    with ODHClient(served["url"], timeout=60) as client:
        first = client.search(codes=q, k=5, nprobe=NLIST)
        assert first.generation == 1
        assert [[h.id for h in row] for row in first] == _want(served["codes"], served["ids"], q, 5)

        c2, ids2, codes2 = _codes_dir(root, 2)
        build(c2, index, n_shards=2, nlist=NLIST)  # in place, while serving generation 1
        still = client.search(codes=q, k=5, nprobe=NLIST)
        assert still.generation == 1 and not still.partial  # nobody reloaded yet
        assert [[h.id for h in r] for r in still] == [[h.id for h in r] for r in first]

        answer = client.reload(TOKEN)
        assert (answer["previous_generation"], answer["generation"]) == (1, 2)
        want2 = _want(codes2, ids2, q, 5)
        result = client.search(codes=q, k=5, nprobe=NLIST)
        assert result.generation == 2 and [[h.id for h in r] for r in result] == want2
        stats = client.stats()
        digests = {g["manifest_digest"] for g in stats["groups"]}
        assert {g["generation"] for g in stats["groups"]} == {2} and len(digests) == 1
        assert digests == {load_manifest(index).digest}

        _kill("Searcher1")  # Serve restarts it with its deploy-time arguments
        result = _wait_for(client, q, 2)
        assert [[h.id for h in r] for r in result] == want2

        _kill("Ingress")  # a restarted ingress must not roll back to the deploy-time index
        result = _wait_for(client, q, 2)
        assert [[h.id for h in r] for r in result] == want2
        stats = client.stats()
        assert stats["generation"] == 2
        assert {g["generation"] for g in stats["groups"]} == {2}


def test_a_restarted_ingress_starts_from_the_persisted_state(tmp_path: Path) -> None:
    import dataclasses
    import json

    from indexer.manifest import Manifest, ShardEntry
    from serving.reload import STATE_FILE, served_from_info

    def publish(index: Path, generation: int) -> str:
        shard = ShardEntry(
            0, f"gen-{generation:06d}/s.faissbin", "0" * 64, "m.parquet", "0" * 64, 5
        )
        m = Manifest(N_BITS, NLIST, "q.faissbin", "0" * 64, (shard,), generation=generation)
        write_manifest(str(index), dataclasses.replace(m))
        return load_manifest(str(index)).digest

    home, other = tmp_path / "a", tmp_path / "b"
    d1 = publish(home, 1)
    info = {"index": str(home), "home": str(home), "generation": 1, "digest": d1,
            "n_bits": N_BITS, "group_shards": [[0]], "deploy_id": "deploy-1"}  # fmt: skip
    assert served_from_info(info, 1).generation == 1
    d2 = publish(home, 2)  # an in-place rebuild: the current manifest is the truth
    served = served_from_info(info, 1)
    assert (served.generation, served.digest) == (2, d2) and served.specs[0].digest == d2

    publish(other, 1)
    d_other = publish(other, 2)
    state = {"format_version": 1, "deploy_id": "deploy-1", "index": str(other)}
    (home / STATE_FILE).write_text(json.dumps(state))
    served = served_from_info(info, 1)
    assert served.info["index"] == str(other) and served.digest == d_other
    # a state of an earlier deployment, or one pointing outside the roots, is ignored
    (home / STATE_FILE).write_text(json.dumps(state | {"deploy_id": "deploy-0"}))
    assert served_from_info(info, 1).info["index"] == str(home)
    (home / STATE_FILE).write_text(json.dumps(state | {"index": "/etc"}))
    assert served_from_info(info, 1).info["index"] == str(home)


def test_the_encoder_checksum_is_verified_and_swapped(tiny_checkpoint: str, tmp_path: Path) -> None:
    import torch

    from odh_core.checkpoint import EncoderConfig, checkpoint_sha256, save_checkpoint
    from odh_core.models import create_encoder
    from serving.app import _verified_encoder_sha
    from serving.query_encoder import QueryEncoderCore

    torch.manual_seed(1)
    other = str(tmp_path / "other")
    config = EncoderConfig(name="resnet_small", n_bits=16, n_classes=4)
    save_checkpoint(create_encoder("resnet_small", n_bits=16, n_classes=4), config, other)
    sha1, sha2 = checkpoint_sha256(tiny_checkpoint), checkpoint_sha256(other)
    assert sha1 != sha2
    with pytest.raises(ValueError, match="index was encoded with"):
        _verified_encoder_sha(tiny_checkpoint, sha2)  # before deploying, not in a replica log
    with pytest.raises(ValueError, match="index was encoded with"):
        QueryEncoderCore(tiny_checkpoint, expected_sha256=sha2)
    core = QueryEncoderCore(tiny_checkpoint, expected_sha256=sha1)
    png = _png()
    assert core.encode_requests([[png]])[0].encoder_sha256 == sha1
    with pytest.raises(ValueError):
        core.swap(other, "f" * 64)  # the file is not what the manifest names: keep the old one
    assert core.sha256 == sha1
    assert core.swap(other, sha2)["sha256"] == sha2
    result = core.encode_requests([[png]])[0]
    assert result.encoder_sha256 == sha2 and result.codes.shape == (1, 2)


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28), mode="L").save(buf, "PNG")
    return buf.getvalue()


class _SpecGroup:
    """A fake searcher group answering from whatever GroupSpec it is called with."""

    def __init__(self) -> None:
        self.search = _Method(self._search)
        self.prepare = _Method(lambda spec: {"replica": "r0", "generation": spec[2]})

    @staticmethod
    def _search(codes: Any, k: int, nprobe: Any, spec: Any) -> Any:
        from serving.searcher import GroupHits

        return GroupHits(
            np.array([[0]], np.int32), np.array([[spec[2]]], np.int64), [["k"]], [[None]],
            spec[2], spec[3],
        )  # fmt: skip


class _Method:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def remote(self, *args: Any) -> Any:
        fut: asyncio.Future = asyncio.get_event_loop().create_future()
        fut.set_result(self.fn(*args))
        fut.cancel = lambda: None  # type: ignore[method-assign]
        return fut


def test_other_ingress_replicas_follow_a_persisted_reload(tmp_path: Path) -> None:
    import dataclasses

    from indexer.manifest import Manifest, ShardEntry
    from serving.reload import ServedIndex, write_serving_state
    from serving.router import QueryRouter
    from serving.schemas import SearchRequest

    def publish(index: Path, generation: int) -> str:
        shard = ShardEntry(0, "s.faissbin", "0" * 64, "m.parquet", "0" * 64, 5)
        m = Manifest(N_BITS, NLIST, "q.faissbin", "0" * 64, (shard,), generation=generation)
        write_manifest(str(index), dataclasses.replace(m))
        return load_manifest(str(index)).digest

    home, other = tmp_path / "a", tmp_path / "b"
    d1 = publish(home, 1)
    publish(other, 1)
    publish(other, 2)
    info = {"index": str(home), "home": str(home), "generation": 1, "digest": d1,
            "n_bits": N_BITS, "group_shards": [[0]], "deploy_id": "d"}  # fmt: skip
    request = SearchRequest(codes=["00" * (N_BITS // 8)], k=1)

    async def scenario() -> tuple[int, int, str]:
        replica_a = QueryRouter(None, [_SpecGroup()], info)
        replica_b = QueryRouter(None, [_SpecGroup()], info)
        await replica_a.reload(str(other))  # the reload call reaches replica A only
        before = (await replica_b.run_search(request)).generation
        replica_b._next_sync = 0.0  # its periodic check is due
        await replica_b.run_search(request)
        await replica_b._sync_task
        after = await replica_b.run_search(request)
        return before, after.generation, replica_b.served.info["index"]

    before, after, index = asyncio.run(scenario())
    assert (before, after) == (1, 2) and index == str(other)
    # a state of another deployment is not followed
    write_serving_state(str(home), ServedIndex({"index": str(home), "deploy_id": "x"}, None, 32, 9))
    router = QueryRouter(None, [_SpecGroup()], info)
    assert not router._behind({"deploy_id": "x", "index": str(other), "generation": 9})
