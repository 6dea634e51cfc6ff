"""The same formats on object storage: an image set and an index built on a local moto S3 server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from indexer import storage
from indexer.build import build
from indexer.codes import write_code_set
from indexer.converters.synthetic import make_synthetic
from indexer.imageset import load_arrays, read_image_set, read_info
from indexer.manifest import read_manifest
from indexer.search import open_index
from indexer.shards import load_meta, load_shard
from indexer.synthetic_codes import uniform_codes


@pytest.fixture(scope="module")
def s3(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    for key, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch_module.setenv(key, value)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="odh")
    yield {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }
    server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_image_set_on_s3(s3: dict[str, Any]) -> None:
    info = make_synthetic("s3://odh/images", n_classes=3, per_class=6, storage_options=s3)
    assert read_info("s3://odh/images", storage_options=s3) == info
    table = read_image_set("s3://odh/images", splits=["query"], storage_options=s3)
    assert table.num_rows == 3
    ids, images, labels = load_arrays("s3://odh/images", ["query"], storage_options=s3)
    assert images.shape == (3, 28, 28, 1) and labels.sum() == 3
    assert ids.tolist() == table.column("id").to_pylist()


def test_build_on_s3(s3: dict[str, Any], ray_local: None) -> None:
    n, n_bits = 400, 32
    ids = np.arange(n, dtype=np.int64)
    codes = uniform_codes(n, n_bits, seed=0)
    write_code_set(
        "s3://odh/codes", ids, codes, n_bits, keys=[f"k{i}" for i in ids], labels=[[0]] * n,
        splits=["database"] * n, storage_options=s3,
    )  # fmt: skip

    manifest = build("s3://odh/codes", "s3://odh/index", n_shards=2, nlist=4, storage_options=s3)
    assert read_manifest("s3://odh/index", storage_options=s3) == manifest
    shards = [load_shard("s3://odh/index", e, storage_options=s3) for e in manifest.shards]
    assert sum(s.ntotal for s in shards) == n
    assert load_meta("s3://odh/index", manifest.shards[0], storage_options=s3).num_rows > 0
    dist, idx = open_index("s3://odh/index", storage_options=s3).search(codes[:4], 1, nprobe=4)
    assert dist[:, 0].tolist() == [0] * 4 and idx[:, 0].tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="mmap=True needs a local file"):
        load_shard("s3://odh/index", manifest.shards[0], mmap=True, storage_options=s3)


@pytest.mark.slow
def test_encode_and_build_on_s3(
    s3: dict[str, Any], ray_local: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import torch

    from indexer.codes import read_codes
    from indexer.encode import EncodeConfig, encode
    from odh_core.checkpoint import EncoderConfig, save_checkpoint
    from odh_core.models import create_encoder

    torch.manual_seed(0)
    ckpt = str(tmp_path_factory.mktemp("ckpt") / "encoder")
    config = EncoderConfig(name="resnet_small", n_bits=16, image_size=28, channels=1, n_classes=3)
    save_checkpoint(create_encoder("resnet_small", n_bits=16, n_classes=3), config, ckpt)
    make_synthetic("s3://odh/enc-images", n_classes=3, per_class=6, storage_options=s3)
    summary = encode(EncodeConfig("s3://odh/enc-images", ckpt, "s3://odh/enc-codes", batch_size=8),
                     storage_options=s3)  # fmt: skip
    assert (summary.read, summary.encoded, summary.rejected) == (18, 18, 0)
    assert storage.exists("s3://odh/enc-codes/metrics.prom", s3)
    assert read_codes("s3://odh/enc-codes", storage_options=s3).num_rows == 18
    # a rerun replaces the output as a whole after it succeeded (no rename on object stores)
    again = encode(EncodeConfig("s3://odh/enc-images", ckpt, "s3://odh/enc-codes", batch_size=8),
                   storage_options=s3)  # fmt: skip
    assert again.encoded == 18
    assert read_codes("s3://odh/enc-codes", storage_options=s3).num_rows == 18
    fs, _ = storage.url_to_fs("s3://odh", s3)
    assert not [p for p in fs.ls("odh", detail=False) if ".staging-" in p]
    manifest = build("s3://odh/enc-codes", "s3://odh/enc-index", n_shards=2, nlist=2,
                     storage_options=s3)  # fmt: skip
    assert manifest.ntotal == 18
    assert read_manifest("s3://odh/enc-index", storage_options=s3).generation == 1
