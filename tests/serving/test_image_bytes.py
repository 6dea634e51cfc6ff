"""ImageStore: stored bytes by id across parts and row groups, media types, provenance lookup."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from serving.images import ImageStore, ImageUnavailable, content_type, image_set_of


def _image_set(root: Path, n: int = 50) -> tuple[str, np.ndarray, list[bytes]]:
    from indexer.imageset import DatasetInfo, write_image_set

    rng = np.random.default_rng(3)
    ids = rng.permutation(10_000)[:n].astype(np.int64)
    images = [b"\x89PNG\r\n\x1a\n" + rng.bytes(int(rng.integers(5, 40))) for _ in range(n)]
    table = pa.table({"id": ids, "image": pa.array(images, pa.binary())})
    info = DatasetInfo(name="t", class_names=("a", "b"), image_size=(4, 4), channels=1)
    out = str(root / "images")
    write_image_set(table, out, info, rows_per_part=17)  # 3 parts
    return out, ids, images


def test_store_returns_the_stored_bytes_of_every_id(tmp_path: Path) -> None:
    path, ids, images = _image_set(tmp_path)
    store = ImageStore(path)
    assert len(store) == len(ids)
    for i in np.random.default_rng(0).permutation(len(ids)):
        assert store.get(int(ids[i])) == images[i]
    missing = int(np.setdiff1d(np.arange(10_001), ids)[0])
    with pytest.raises(ImageUnavailable, match=str(missing)):
        store.get(missing)


def test_content_type_from_signature() -> None:
    assert content_type(b"\x89PNG\r\n\x1a\nrest") == "image/png"
    assert content_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert content_type(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    assert content_type(b"GIF89a...") == "image/gif"
    assert content_type(b"plain text") == "application/octet-stream"


def test_image_set_of_follows_the_build_provenance(tmp_path: Path) -> None:
    from indexer.manifest import Manifest, ShardEntry, write_manifest

    codes = tmp_path / "codes"
    codes.mkdir()
    (codes / "_encode.json").write_text(json.dumps({"n_bits": 16, "image_set": "/data/set"}))
    shard = ShardEntry(0, "shard-00000.faissbin", "x", "meta-00000.parquet", "y", 1)
    manifest = Manifest(16, 1, "q", "z", (shard,), build_config={"codes": str(codes)})
    write_manifest(str(tmp_path / "index"), manifest)
    assert image_set_of(str(tmp_path / "index")) == "/data/set"
    old = Manifest(16, 1, "q", "z", (shard,))  # an index built before provenance: no codes
    write_manifest(str(tmp_path / "old"), old)
    assert image_set_of(str(tmp_path / "old")) is None
