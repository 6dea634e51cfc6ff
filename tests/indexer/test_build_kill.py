"""A build killed mid-way (SIGKILL of the whole `odh build` process group) finishes on a rerun,
reusing the trained quantizer and every finished shard, and equals a clean build."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from indexer.build import build
from indexer.codes import write_code_set
from indexer.manifest import read_manifest
from indexer.synthetic_codes import clustered_codes

pytestmark = pytest.mark.e2e

N_BITS = 64


def _build_cmd(codes: str, output: Path) -> list[str]:
    return [sys.executable, "-m", "cluster.cli", "build", "--codes", codes,
            "--output", str(output), "--shards", "6", "--nlist", "64", "--seed", "0",
            "--num-cpus", "2"]  # fmt: skip


def _kill_when(path: Path, proc: subprocess.Popen, deadline_s: float = 180) -> None:
    deadline = time.monotonic() + deadline_s
    while not path.exists():
        assert proc.poll() is None, "the build ended before it could be killed"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # driver and its embedded Ray cluster, no clean-up
    proc.wait(timeout=60)


def test_killed_build_resumes_to_the_clean_result(tmp_path: Path, ray_local: None) -> None:
    rng = np.random.default_rng(0)
    ids = rng.permutation(400_000).astype(np.int64)[:300_000]
    codes = write_code_set(
        str(tmp_path / "c"), ids, clustered_codes(len(ids), N_BITS, 64, 0.1, seed=1), N_BITS
    )
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _build_cmd(codes, killed), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _kill_when(killed / "_build" / "state.json", proc)  # quantizer trained, shards under way
    assert not (killed / "manifest.json").exists(), "killed before the manifest was written"
    quantizer_mtime = (killed / "gen-000001" / "quantizer.faissbin").stat().st_mtime_ns
    finished = {p.name: p.stat().st_mtime_ns for p in (killed / "_build").glob("shard-*.json")}

    rerun = subprocess.run(_build_cmd(codes, killed), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (killed / "gen-000001" / "quantizer.faissbin").stat().st_mtime_ns == quantizer_mtime, (
        "retrained"
    )
    for name, mtime in finished.items():
        assert (killed / "_build" / name).stat().st_mtime_ns == mtime, f"{name} was rebuilt"

    clean = build(codes, str(tmp_path / "clean"), n_shards=6, nlist=64, seed=0)
    resumed = read_manifest(str(killed))
    assert [s.sha256 for s in resumed.shards] == [s.sha256 for s in clean.shards]
    assert resumed.quantizer_sha256 == clean.quantizer_sha256
