"""`odh cluster up|status|down` and `odh index --submit`: a job submitted through the Jobs API of a
local multi-node cluster builds the index; `down` stops that cluster's processes and no others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cluster.local_cluster import _cluster_processes

pytestmark = pytest.mark.e2e


def _odh(*args: str, timeout: float = 300) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "cluster.cli", *args], capture_output=True, text=True,
        timeout=timeout, env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"),
    )  # fmt: skip
    assert proc.returncode == 0, f"odh {' '.join(args)}:\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_submit_index_job_to_a_local_multinode_cluster(
    synthetic_set: Path, tiny_checkpoint: str, tmp_path: Path, free_port: Callable[[], int]
) -> None:
    port, dashboard = free_port(), free_port()
    _odh("cluster", "up", "--workers", "2", "--worker-resources", '{"searcher": 1}',
         "--port", str(port), "--dashboard-port", str(dashboard))  # fmt: skip
    try:
        nodes = json.loads(_odh("cluster", "status", "--address", f"127.0.0.1:{port}"))
        assert len(nodes) == 3
        assert sum(n["resources"].get("searcher", 0) for n in nodes) == 2
        job_id = _odh(
            "index", "--images", str(synthetic_set), "--checkpoint", tiny_checkpoint,
            "--output", str(tmp_path / "job"), "--shards", "2", "--nlist", "4",
            "--batch-size", "16", "--submit", f"http://127.0.0.1:{dashboard}",
            "--runtime-env-json", "{}",  # this machine's environment already holds the project
        ).strip()  # fmt: skip
        assert job_id.startswith("raysubmit_")
        manifest = json.loads((tmp_path / "job" / "index" / "manifest.json").read_text())
        assert sum(s["ntotal"] for s in manifest["shards"]) == 48
    finally:
        _odh("cluster", "down", "--port", str(port))
    assert _cluster_processes(port) == []
