"""Searcher replicas killed under a bounded load on 127.0.0.1.

* ``replicas: 2`` — the other replica answers (the ingress retries a failed call once): no failed
  and no partial request.
* ``replicas: 1`` — partial answers (``missing_groups``) until Serve restarts the replica, then
  complete ones again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from serving.client import ODHClient

pytestmark = pytest.mark.e2e

N_BITS = 32
N_DB = 120


@pytest.fixture(scope="module")
def index_dir(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    from indexer.build import build
    from indexer.codes import write_code_set
    from indexer.synthetic_codes import uniform_codes

    root: Path = tmp_path_factory.mktemp("faults")
    codes = uniform_codes(N_DB, N_BITS, seed=3)
    write_code_set(
        str(root / "codes"), np.arange(N_DB, dtype=np.int64), codes, N_BITS,
        keys=[f"k{i}" for i in range(N_DB)], labels=[[i % 3] for i in range(N_DB)],
        splits=["database"] * N_DB,
    )  # fmt: skip
    out = str(root / "index")
    build(str(root / "codes"), out, n_shards=2, nlist=4, seed=0)
    return out


@pytest.fixture(scope="module")
def servers(index_dir: str, free_port: Callable[[], int]) -> Iterator[dict[str, str]]:
    """Two apps: ``r2`` (1 group × 2 replicas) and ``r1`` (2 groups × 1 replica)."""
    from ray import serve

    from serving.app import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    common = {"index": index_dir, "num_cpus": 0.2, "timeout_s": 3.0}
    serve.run(build_app(common | {"groups": 1, "replicas": 2}), name="r2", route_prefix="/r2")
    # r1's group deadline is shorter than a replica restart (a new process loading FAISS and the
    # shards takes seconds), so the window between the kill and the restart is observable.
    r1 = common | {"groups": 2, "replicas": 1, "timeout_s": 1.0}
    serve.run(build_app(r1), name="r1", route_prefix="/r1")
    try:
        yield {"r2": f"http://127.0.0.1:{port}/r2", "r1": f"http://127.0.0.1:{port}/r1"}
    finally:
        for name in ("r2", "r1"):
            serve.delete(name)
        serve.shutdown()


def _kill_one_replica(app: str, deployment: str) -> str:
    import ray
    from ray import serve

    handle = serve.get_deployment_handle(deployment, app_name=app)
    name = handle.actor_name.remote().result(timeout_s=30)
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    return name


def test_two_replicas_no_failed_request_when_one_dies(servers: dict[str, str]) -> None:
    codes = np.random.default_rng(0).integers(0, 256, size=(1, N_BITS // 8), dtype=np.uint8)
    with ODHClient(servers["r2"], timeout=30) as client:
        assert client.stats()["replicas"] == 2
        outcomes = []
        killed = None
        deadline = time.monotonic() + 20
        for i in range(60):  # bounded: 60 requests, 20 s
            if i == 10:
                killed = _kill_one_replica("r2", "Searcher0")
            result = client.search(codes=codes, k=5)  # raises on any HTTP error
            outcomes.append(result.partial)
            if time.monotonic() > deadline:
                break
        assert killed and len(outcomes) > 10
        assert not any(outcomes), "a request lost its only group although a replica was alive"


def test_one_replica_partial_until_serve_restarts_it(servers: dict[str, str]) -> None:
    codes = np.random.default_rng(1).integers(0, 256, size=(2, N_BITS // 8), dtype=np.uint8)
    with ODHClient(servers["r1"], timeout=30) as client:
        assert not client.search(codes=codes, k=5).partial
        _kill_one_replica("r1", "Searcher1")
        seen_partial = False
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:  # bounded by time; one request at a time
            result = client.search(codes=codes, k=5)
            if result.partial:
                seen_partial = True
                assert result.missing_groups == [1] and all(len(r) == 5 for r in result)
            elif seen_partial:
                break
            time.sleep(0.1)
        assert seen_partial, "no partial answer while group 1's only replica was dead"
        assert not result.partial, "Serve did not restart the replica within 45 s"
        assert client.stats()["missing_groups"] == []
