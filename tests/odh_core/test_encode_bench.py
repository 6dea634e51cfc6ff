"""Smoke test of ``odh bench encode`` with tiny sizes (not timed: the code path and its files)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import encode as bench


def _fmnist_or_skip() -> None:
    from indexer.converters.fashion_mnist import fashion_mnist_source

    try:
        fashion_mnist_source(None)
    except FileNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST IDX files absent: {exc}")


def test_quick_run_writes_rows_and_report(tmp_path: Path) -> None:
    _fmnist_or_skip()
    cfg = bench.Config(quick=True, output=str(tmp_path), job_images=0, n_bits=32)
    assert bench.run(cfg) == 0
    result = json.loads((tmp_path / "encode.json").read_text())
    forms = {r["form"] for r in result["rows"]}
    assert forms == {"fp", "bnn-float", "packed"}
    assert {(r["batch"], r["threads"]) for r in result["rows"]} == {(1, 1), (8, 1)}
    assert all(r["images_per_s"] > 0 for r in result["rows"])
    assert result["codes_identical"]["identical"] is True
    assert result["lce"]["available"] is False and result["lce"]["reason"]
    assert result["popcount"]["network_binary_macs"] == result["stats"]["binary_macs"]
    assert result["bytes"]["packed_export_binary_weights"] == result["stats"]["binary_params"] // 8
    md = (tmp_path / "encode.md").read_text()
    assert "| packed | 8 | 1 |" in md and "Popcount limit" in md
    assert (tmp_path / "encode.png").stat().st_size > 0
    prof = result["profile"]
    layers = [r["layer"] for r in prof["rows"]]
    assert layers[0].startswith("stem") and layers[-1].startswith("pool + hash head")
    blocks = [r for r in prof["rows"] if r["layer"].startswith("block")]
    assert len(blocks) == 6  # resnet_small's binary blocks, each split into its parts
    for r in blocks:
        parts = ("conv_ms", "post_ms", "shortcut_ms", "pack_next_ms", "pack_alone_ms")
        assert all(r[k] >= 0 for k in parts) and r["conv_ms"] > 0
    assert "Where the packed path's time goes" in md and "| block 5 (128→128" in md


def test_breakdown_times_every_stage(tmp_path: Path) -> None:
    from odh_core.checkpoint import EncoderConfig, save_checkpoint
    from odh_core.models import create_encoder

    torch.manual_seed(0)
    model = create_encoder("resnet_small", n_bits=16).eval()
    ckpt = str(tmp_path / "ckpt")
    save_checkpoint(model, EncoderConfig(name="resnet_small", n_bits=16), ckpt)
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    out = bench.breakdown(ckpt, images, str(tmp_path))
    assert set(out) == {"float", "packed"}
    for stages in out.values():
        assert stages["images"] == 20
        assert min(stages["decode_s"], stages["encode_s"], stages["write_s"]) >= 0
    assert list((tmp_path / "breakdown-packed" / "codes").glob("part-*.parquet"))


def test_job_runs_both_paths_with_identical_codes(tmp_path: Path) -> None:
    _fmnist_or_skip()
    cfg = bench.Config(quick=True, output=str(tmp_path), job_images=64, breakdown_images=0,
                       n_bits=16).effective()  # fmt: skip
    imgs = bench._fmnist(64)
    models = bench._models(cfg, ((imgs.astype(np.float32) / 255.0 - 0.5) / 0.5)[:, None])
    out = bench.job(cfg, models, str(tmp_path))
    assert out["images"] == 64 and out["codes_identical"] is True
    for key in ("before", "after"):
        assert out[key]["encoded"] == 64 and out[key]["rejected"] == 0
    assert out["speedup"] == round(out["images_per_s_after"] / out["images_per_s_before"], 2)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="batches"):
        bench.Config(batches=(0,))
    with pytest.raises(ValueError, match="repeats"):
        bench.Config(repeats=0)
    assert bench.Config(quick=True).effective().job_images == 300
