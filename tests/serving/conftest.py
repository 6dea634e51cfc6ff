"""A small served index *with its image set* for the tests that use the whole app over HTTP
(search page in a browser, the OpenAPI fuzzer): seeded synthetic images written as a real image
set, codes from a real (untrained, seeded) encoder, ``_encode.json`` naming the image set as the
encode job writes it, and the real ``indexer.build.build``."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

PAGE_N_BITS = 32
PAGE_N_DB = 96
PAGE_CLASSES = ("ring", "bar", "cross", "dot")


def _png(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _shapes(rng: np.random.Generator, n: int) -> tuple[list[bytes], list[int]]:
    """28×28 grayscale PNGs of 4 shape classes with random offsets and noise."""
    yy, xx = np.mgrid[:28, :28]
    images, labels = [], []
    for i in range(n):
        c = i % 4
        cy, cx = rng.integers(10, 18, size=2)
        r = np.hypot(yy - cy, xx - cx)
        shape = [
            (np.abs(r - 7) < 2),
            (np.abs(yy - cy) < 3) & (np.abs(xx - cx) < 10),
            (np.abs(yy - cy) < 2) | (np.abs(xx - cx) < 2),
            r < 5,
        ][c]
        img = shape * 220.0 + rng.normal(0, 25, size=(28, 28))
        images.append(_png(np.clip(img, 0, 255).astype(np.uint8)))
        labels.append(c)
    return images, labels


@dataclass(frozen=True)
class PageIndex:
    """A built index and the image set it was encoded from."""

    path: str
    image_set: str
    images: list[bytes]
    ids: np.ndarray
    codes: np.ndarray
    labels: list[int]


@pytest.fixture(scope="module")
def page_index(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> PageIndex:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from indexer.build import build
    from indexer.codes import code_schema
    from indexer.imageset import DatasetInfo, write_image_set
    from odh_core.checkpoint import EncoderConfig, save_checkpoint
    from odh_core.encoder import Encoder
    from odh_core.models import create_encoder

    root: Path = tmp_path_factory.mktemp("page")
    rng = np.random.default_rng(0)
    images, labels = _shapes(rng, PAGE_N_DB)
    ids = (np.arange(PAGE_N_DB, dtype=np.int64) * 5 + 11)[rng.permutation(PAGE_N_DB)]
    keys = [f"shape-{i:04d}.png" for i in ids]
    image_set = str(root / "images")
    table = pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "image": pa.array(images, pa.binary()),
            "label": pa.array([[c] for c in labels], pa.list_(pa.int32())),
            "key": keys,
            "split": ["database"] * PAGE_N_DB,
        }
    )
    info = DatasetInfo(name="shapes", class_names=PAGE_CLASSES, image_size=(28, 28), channels=1)
    write_image_set(table, image_set, info, rows_per_part=40)  # 3 parts: lookups cross parts

    torch.manual_seed(0)
    model = create_encoder("resnet_small", n_bits=PAGE_N_BITS, in_channels=1)
    ckpt = str(root / "ckpt")
    config = EncoderConfig(name="resnet_small", n_bits=PAGE_N_BITS, image_size=28, channels=1)
    save_checkpoint(model, config, ckpt)
    codes = np.asarray(
        Encoder.from_checkpoint(ckpt, num_threads=1).encode_images(images), dtype=np.uint8
    )
    codes_dir = root / "codes"
    (codes_dir / "codes").mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "id": ids,
                "code": pa.array([c.tobytes() for c in codes], pa.binary(PAGE_N_BITS // 8)),
                "key": keys,
                "label": pa.array([[c] for c in labels], pa.list_(pa.int32())),
                "split": ["database"] * PAGE_N_DB,
            },
            schema=code_schema(PAGE_N_BITS),
        ),
        codes_dir / "codes" / "part-00000.parquet",
    )
    encode_info = {"n_bits": PAGE_N_BITS, "checkpoint": ckpt, "image_set": image_set}
    (codes_dir / "_encode.json").write_text(json.dumps(encode_info))
    out = str(root / "index")
    build(str(codes_dir), out, n_shards=2, nlist=4, seed=0)
    return PageIndex(out, image_set, images, ids, codes, labels)


@pytest.fixture(scope="module")
def page_server(page_index: PageIndex, free_port: Callable[[], int]) -> Iterator[str]:
    """The whole app (ingress, encoder, 2 searcher groups) on a free loopback port."""
    from serving.app import start_server, stop_server

    url = start_server(page_index.path, port=free_port(), groups=2, admin_token="page-token")
    try:
        yield url
    finally:
        stop_server()
