"""The Ray Data encode job on a synthetic set with one corrupt image, then evaluate and build."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from indexer.build import build
from indexer.codes import code_arrays, read_codes, read_encode_info, read_rejects
from indexer.converters.synthetic import make_synthetic
from indexer.encode import EncodeConfig, encode
from indexer.evaluate import evaluate
from indexer.imageset import read_image_set
from indexer.search import open_index

CORRUPT_ID = 5


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    import torch

    from odh_core.checkpoint import EncoderConfig, save_checkpoint
    from odh_core.models import create_encoder

    torch.manual_seed(0)
    model = create_encoder("resnet_small", n_bits=16, n_classes=4)
    config = EncoderConfig(name="resnet_small", n_bits=16, image_size=28, channels=1, n_classes=4)
    path = str(tmp_path_factory.mktemp("ckpt") / "encoder")
    save_checkpoint(model, config, path)
    return path


@pytest.fixture(scope="module")
def corrupt_set(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = str(tmp_path_factory.mktemp("images") / "set")
    make_synthetic(out, n_classes=4, per_class=12, image_size=28, seed=0)
    part = Path(out, "part-00000.parquet")
    table = pq.read_table(part)
    images = table.column("image").to_pylist()
    row = table.column("id").to_pylist().index(CORRUPT_ID)
    images[row] = b"\x89PNG this is not an image"
    table = table.set_column(1, pa.field("image", pa.binary(), nullable=False),
                             pa.array(images, pa.binary()))  # fmt: skip
    pq.write_table(table, part)
    return out


def test_encode_with_corrupt_row(
    ray_local: None, tiny_checkpoint: str, corrupt_set: str, tmp_path: Path
) -> None:
    from odh_core.checkpoint import checkpoint_sha256
    from odh_core.encoder import Encoder

    out = str(tmp_path / "codes")
    summary = encode(EncodeConfig(corrupt_set, tiny_checkpoint, out, batch_size=8, num_cpus=0.5))
    assert (summary.read, summary.encoded, summary.rejected) == (48, 47, 1)
    assert summary.images_per_s > 0

    rejects = read_rejects(out)
    assert rejects.column("id").to_pylist() == [CORRUPT_ID]
    assert rejects.column("stage").to_pylist() == ["decode"]
    assert "ImageDecodeError" in rejects.column("error")[0].as_py()
    assert rejects.column("key").to_pylist() == [f"synthetic/{CORRUPT_ID:06d}"]

    codes = read_codes(out)
    ids, arr = code_arrays(codes, 16)
    assert sorted(ids.tolist()) == sorted(set(range(48)) - {CORRUPT_ID})
    # the job's codes equal the encoder applied in-process, row by row
    images = read_image_set(corrupt_set, columns=["id", "image", "key", "label", "split"])
    by_id = {r["id"]: r for r in images.to_pylist()}
    expected = Encoder.from_checkpoint(tiny_checkpoint).encode_images(
        [by_id[i]["image"] for i in ids.tolist()]
    )
    np.testing.assert_array_equal(arr, expected)
    rows = codes.to_pylist()
    for r in rows[:5]:
        src = by_id[r["id"]]
        assert (r["key"], r["label"], r["split"]) == (src["key"], src["label"], src["split"])

    info = read_encode_info(out)
    assert info["n_bits"] == 16 and info["checkpoint"] == tiny_checkpoint
    assert info["checkpoint_sha256"] == checkpoint_sha256(tiny_checkpoint)
    assert info["batch_size"] == 8 and info["concurrency"] == 1
    saved = json.loads(Path(out, "_summary.json").read_text())
    assert saved["encoded"] == 47 and saved["rejected"] == 1 and saved["read"] == 48
    assert saved["rejected_by_stage"] == {"decode": 1}
    prom = Path(out, "metrics.prom").read_text()
    assert 'odh_job_rows_total{outcome="read",stage="encode"} 48.0' in prom
    assert 'odh_job_rows_total{outcome="encoded",stage="encode"} 47.0' in prom
    assert 'odh_job_rows_total{outcome="rejected",stage="decode"} 1.0' in prom
    assert 'odh_job_bytes_total{stage="read"}' in prom and "odh_job_stage_seconds" in prom

    # rerunning replaces the previous output rather than adding to it
    again = encode(EncodeConfig(corrupt_set, tiny_checkpoint, out, batch_size=16))
    assert (again.encoded, again.rejected) == (47, 1)
    assert read_codes(out).num_rows == 47

    # evaluate by the image set's protocol
    metrics = evaluate(out, corrupt_set, seed=0)
    split = dict(zip(images.column("id").to_pylist(), images.column("split").to_pylist(),
                     strict=True))  # fmt: skip
    n_query = sum(1 for i in ids.tolist() if split[i] == "query")
    assert metrics["n_query"] == n_query and metrics["n_database"] == 47 - n_query
    assert metrics["protocol"] == "synthetic-1"
    # the weights are untrained, so no learning to assert: check evaluate against an oracle
    # that takes the protocol's query and database rows out of the written codes by hand
    from indexer.imageset import label_column_to_multihot, read_info
    from odh_core.metrics import evaluate_codes

    proto = read_info(corrupt_set).protocol
    written = read_codes(out)
    by_split = written.column("split").to_pylist()

    def rows(splits: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        t = written.filter(pa.array([s in splits for s in by_split]))
        return code_arrays(t, 16)[1], label_column_to_multihot(t.column("label"), 4)

    (qc, ql), (dc, dl) = rows(proto.query_splits), rows(proto.database_splits)
    assert len(qc) == n_query and len(dc) == 47 - n_query
    oracle = evaluate_codes(qc, ql, dc, dl, n_bits=16, seed=0)
    for key in ("map_all_tie_aware", "map_all_shuffled", "p_h2"):
        assert metrics[key] == pytest.approx(oracle[key]), key

    # and the codes index: the manifest carries the encoder provenance
    manifest = build(out, str(tmp_path / "index"), n_shards=2)
    assert manifest.ntotal == 47 and manifest.encoder_sha256 == info["checkpoint_sha256"]
    dist, _ = open_index(str(tmp_path / "index")).search(arr[:3], 1, nprobe=manifest.nlist)
    assert dist[:, 0].tolist() == [0, 0, 0]
