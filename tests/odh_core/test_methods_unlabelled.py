"""Unlabelled image sets (no ``label`` column): refused by methods that need labels before any
work; trained with ``bdnn-unsup`` and taken through encode, build, serve and query (e2e)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def _unlabelled_set(out: Path) -> Path:
    import pyarrow.parquet as pq

    from indexer.converters.synthetic import make_synthetic

    make_synthetic(str(out), n_classes=4, per_class=12, image_size=28, seed=0)
    for part in sorted(out.glob("part-*.parquet")):
        table = pq.read_table(part)
        pq.write_table(table.drop_columns(["label"]), part)
    return out


def test_unlabelled_set_loads_without_labels(tmp_path: Path) -> None:
    from indexer.imageset import has_label_column, load_arrays_unlabelled_ok
    from indexer.training import load_train_split

    images = _unlabelled_set(tmp_path / "images")
    assert not has_label_column(str(images))
    _, arr, labels = load_arrays_unlabelled_ok(str(images))
    assert labels is None and arr.shape[1:] == (28, 28, 1)
    train_images, train_labels = load_train_split(str(images))
    assert train_labels is None and len(train_images) > 0


def test_label_method_refuses_unlabelled_set_before_any_work(tmp_path: Path) -> None:
    from indexer.training import train_encoder
    from odh_core.config import TrainConfig

    images = _unlabelled_set(tmp_path / "images")
    # Ray is not even initialised: the refusal comes first, naming method and column
    with pytest.raises(ValueError, match=r"method 'dpsh' needs class labels.*no 'label' column"):
        train_encoder(str(images), TrainConfig(method="dpsh", n_bits=16), str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(RAY_USAGE_STATS_ENABLED="0", TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
    return env


def _odh(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "cluster.cli", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


@pytest.mark.e2e
@pytest.mark.slow
def test_unlabelled_set_through_train_encode_build_serve_query(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    import httpx
    import pyarrow.parquet as pq

    images = _unlabelled_set(tmp_path / "images")
    encoder, codes, index = tmp_path / "encoder", tmp_path / "codes", tmp_path / "index"
    _odh(
        "train", "--images", str(images), "--output", str(encoder), "--bits", "16",
        "--method", "bdnn-unsup", "--method-config", '{"feature_side": 4}',
        "--stage1-epochs", "1", "--stage2-epochs", "1", "--batch-size", "16", "--num-cpus", "2",
    )  # fmt: skip
    config = json.loads((encoder / "checkpoint" / "config.json").read_text())
    assert config["method"] == "bdnn-unsup"
    assert config["provenance"]["method_config"]["feature_side"] == 4
    _odh(
        "encode", "--images", str(images), "--checkpoint", str(encoder / "checkpoint"),
        "--output", str(codes), "--actor-cpus", "0.5", "--batch-size", "16", "--num-cpus", "2",
    )  # fmt: skip
    _odh("build", "--codes", str(codes), "--output", str(index), "--num-cpus", "2")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = subprocess.Popen(
        [sys.executable, "-m", "cluster.cli", "serve", "--index", str(index), "--port", str(port),
         "--num-cpus", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            assert serve.poll() is None, "odh serve exited early"
            try:
                if httpx.get(f"{url}/v1/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "odh serve did not become healthy"
            time.sleep(1)
        row = pq.read_table(sorted(images.glob("part-*.parquet"))[0]).slice(0, 1).to_pylist()[0]
        query = tmp_path / "query.png"
        query.write_bytes(row["image"])
        out = _odh("query", "--url", url, "--image", str(query), "-k", "5", "--json")
        hits = json.loads(out.stdout)["results"][0]
        assert hits[0]["distance"] == 0 and any(h["id"] == row["id"] for h in hits)
        assert all(h.get("label") is None for h in hits)
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
