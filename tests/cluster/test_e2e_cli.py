"""End to end through the real `odh` CLI: data → train → encode → build → serve → query → eval.

Each CLI call is its own process with its own embedded Ray cluster, exactly as a user runs them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e


def _odh(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "cluster.cli", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(RAY_USAGE_STATS_ENABLED="0", TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
    return env


def _wait_healthy(url: str, proc: subprocess.Popen, deadline_s: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"odh serve exited early:\n{proc.stdout.read() if proc.stdout else ''}"
            )
        try:
            if httpx.get(f"{url}/v1/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError("odh serve did not become healthy in time")


def test_pipeline_through_cli(tmp_path: Path, free_port: Callable[[], int]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from indexer.codes import code_arrays, read_codes
    from odh_core.packing import hamming_distances

    images, encoder = tmp_path / "images", tmp_path / "encoder"
    codes_dir, index = tmp_path / "codes", tmp_path / "index"
    _odh("data", "synthetic", "--output", str(images), "--classes", "4", "--per-class", "12")
    _odh(
        "train", "--images", str(images), "--output", str(encoder), "--bits", "16",
        "--warmup-epochs", "1", "--stage1-epochs", "2", "--stage2-epochs", "2",
        "--batch-size", "16", "--num-cpus", "2",
    )  # fmt: skip
    checkpoint = encoder / "checkpoint"  # train_encoder's documented location
    assert (checkpoint / "config.json").is_file(), "train wrote no checkpoint"
    _odh(
        "encode", "--images", str(images), "--checkpoint", str(checkpoint),
        "--output", str(codes_dir), "--actor-cpus", "0.5", "--batch-size", "16", "--num-cpus", "2",
    )  # fmt: skip
    nlist = 4
    _odh(
        "build", "--codes", str(codes_dir), "--output", str(index), "--shards", "2",
        "--nlist", str(nlist), "--num-cpus", "2",
    )  # fmt: skip
    manifest = json.loads((index / "manifest.json").read_text())
    assert len(manifest["shards"]) == 2

    table = read_codes(str(codes_dir))
    ids, codes = code_arrays(table, 16)
    assert len(ids) == 48

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = subprocess.Popen(
        [sys.executable, "-m", "cluster.cli", "serve", "--index", str(index), "--port", str(port),
         "--num-cpus", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
    )  # fmt: skip
    try:
        _wait_healthy(url, serve)

        # A database image queried by its own bytes comes back at distance 0.
        image_table = pq.read_table(sorted(images.glob("part-*.parquet"))[0])
        row = image_table.slice(0, 1).to_pylist()[0]
        query_file = tmp_path / "query.png"
        query_file.write_bytes(row["image"])
        out = _odh("query", "--url", url, "--image", str(query_file), "-k", "5", "--json")
        hits = json.loads(out.stdout)["results"][0]
        self_hit = [h for h in hits if h["id"] == row["id"]]
        assert self_hit and self_hit[0]["distance"] == 0
        assert hits[0]["distance"] == 0

        # Sharded search with nprobe = nlist equals brute-force Hamming (ties: compare distances).
        rng = np.random.default_rng(0)
        picks = rng.choice(len(ids), size=6, replace=False)
        k = 10
        out = _odh(
            "query", "--url", url, "--code", *[codes[i].tobytes().hex() for i in picks],
            "-k", str(k), "--nprobe", str(nlist), "--json",
        )  # fmt: skip
        results = json.loads(out.stdout)["results"]
        brute = hamming_distances(codes[picks], codes)
        for q, hits in enumerate(results):
            expected = np.sort(brute[q])[:k]
            got = np.array([h["distance"] for h in hits])
            np.testing.assert_array_equal(got, expected)
            for h in hits:  # every returned id really sits at the reported distance
                assert brute[q][np.flatnonzero(ids == h["id"])[0]] == h["distance"]
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()

    out = _odh("eval", "--codes", str(codes_dir), "--images", str(images))
    metrics = json.loads(out.stdout)
    # training learned: mAP far above chance, the tie-aware mAP of all-equal codes (every order
    # equally likely) on the same query/database labels
    from indexer.imageset import label_column_to_multihot, read_info
    from odh_core.metrics import evaluate_codes

    proto = read_info(str(images)).protocol
    table = read_codes(str(codes_dir), columns=["id", "label", "split"])
    split = table.column("split").to_pylist()

    def labels_of(splits: tuple[str, ...]) -> np.ndarray:
        rows = table.filter(pa.array([s in splits for s in split]))
        return label_column_to_multihot(rows.column("label"), 4)

    ql, dl = labels_of(proto.query_splits), labels_of(proto.database_splits)
    zeros = np.zeros((1, 2), np.uint8)
    chance = evaluate_codes(zeros.repeat(len(ql), 0), ql, zeros.repeat(len(dl), 0), dl, n_bits=16)[
        "map_all_tie_aware"
    ]
    # measured (seeded): 0.56 against a chance of 0.31
    assert metrics["map_all_tie_aware"] >= chance + 0.15, (metrics, chance)
    assert metrics["n_query"] > 0
