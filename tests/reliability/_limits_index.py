"""A small built index with a real (untrained, seeded) 28-px encoder, for the limits, overload
and secrets tests: synthetic grey PNGs, codes from the encoder, the real ``indexer.build``."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

N_BITS = 32
N_DB = 64
NLIST = 4


def png(side_w: int, side_h: int | None = None, seed: int = 0) -> bytes:
    """A grey PNG of ``side_w`` × ``side_h`` noise (seeded)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(side_h or side_w, side_w), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class SmallIndex:
    path: str
    checkpoint: str
    ids: np.ndarray
    codes: np.ndarray


def build_small_index(root: Path) -> SmallIndex:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from indexer.build import build
    from indexer.codes import code_schema
    from odh_core.checkpoint import EncoderConfig, save_checkpoint
    from odh_core.encoder import Encoder
    from odh_core.models import create_encoder

    torch.manual_seed(0)
    model = create_encoder("resnet_small", n_bits=N_BITS, in_channels=1)
    ckpt = str(root / "ckpt")
    save_checkpoint(
        model, EncoderConfig(name="resnet_small", n_bits=N_BITS, image_size=28, channels=1), ckpt
    )
    images = [png(28, seed=i) for i in range(N_DB)]
    codes = np.asarray(
        Encoder.from_checkpoint(ckpt, num_threads=1).encode_images(images), dtype=np.uint8
    )
    ids = np.arange(N_DB, dtype=np.int64) * 3 + 7
    (root / "codes" / "codes").mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "id": ids,
                "code": pa.array([c.tobytes() for c in codes], pa.binary(N_BITS // 8)),
                "key": [f"img-{i}" for i in ids],
                "label": pa.array([[int(i % 4)] for i in ids], pa.list_(pa.int32())),
                "split": ["database"] * N_DB,
            },
            schema=code_schema(N_BITS),
        ),
        root / "codes" / "codes" / "part-00000.parquet",
    )
    encode_info = {"n_bits": N_BITS, "checkpoint": ckpt}
    (root / "codes" / "_encode.json").write_text(json.dumps(encode_info))
    out = str(root / "index")
    # no recorded search default: an omitted nprobe probes every list (the cost arithmetic of
    # test_search_cost_budget counts nlist lists for it)
    build(str(root / "codes"), out, n_shards=2, nlist=NLIST, seed=0, target_recall=0.0)
    return SmallIndex(out, ckpt, ids, codes)
