"""The versioned JSON formats: files written by earlier code still load, and write back unchanged.

``tests/fixtures/formats_v1/`` holds a ``manifest.json``, ``_dataset.json`` and checkpoint
``config.json`` written by the hand-written ``to_json`` of format version 1 (before the formats
moved onto the shared serialiser); they must keep loading, field for field.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from indexer.imageset import DatasetInfo, ImageSetError, SplitProtocol
from indexer.manifest import Manifest, ShardEntry
from odh_core.checkpoint import EncoderConfig

FIXTURES = Path(__file__).parent.parent / "fixtures" / "formats_v1"


def _load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_v1_manifest_loads_and_round_trips() -> None:
    obj = _load("manifest.json")
    m = Manifest.from_json(obj)
    assert (m.n_bits, m.nlist, m.generation, m.metric) == (64, 16, 3, "hamming")
    assert (m.quantizer_file, m.quantizer_sha256) == ("quantizer.faissbin", "11" * 32)
    assert (m.encoder_checkpoint, m.encoder_sha256) == ("/ckpt/encoder", "66" * 32)
    assert m.shards == (
        ShardEntry(0, "shard-00000.faissbin", "22" * 32, "meta-00000.parquet", "33" * 32, 120, 0),
        ShardEntry(1, "shard-00001.faissbin", "44" * 32, "meta-00001.parquet", "55" * 32, 80, 1),
    )
    assert m.ntotal == 200 and m.n_shards == 2
    assert m.deleted_ids == (7, 9) and m.deleted_count == 2
    assert m.build_config == {"n_shards": 2, "nlist": 16, "train_size": 1000, "seed": 0}
    # format 1 predates index types: it loads as ivf and is written back as format 2
    assert (m.index_type, m.index_params, m.search_defaults) == ("ivf", {}, {})
    upgraded = {
        **obj,
        "format_version": 2,
        "index": {"type": "ivf", "params": {}, "search_defaults": {}},
    }
    assert m.to_json() == upgraded

    minimal = _load("manifest-minimal.json")
    m2 = Manifest.from_json(minimal)
    assert m2.encoder_checkpoint is None and m2.deleted_ids == () and m2.generation == 1
    assert m2.shards[0].group == 0
    assert m2.to_json()["index"]["type"] == "ivf"
    assert {k: v for k, v in m2.to_json().items() if k not in ("index", "format_version")} == {
        k: v for k, v in minimal.items() if k != "format_version"
    }


def test_v1_dataset_info_loads_and_round_trips() -> None:
    obj = _load("_dataset.json")
    info = DatasetInfo.from_json(obj)
    assert info.name == "fashion-mnist" and info.n_classes == 3
    assert info.image_size == (28, 28) and info.channels == 1
    assert info.counts == {"train": 30, "query": 6, "database": 64}
    assert info.protocol == SplitProtocol(
        name="fmnist-1", seed=0, database_splits=("train", "database")
    )
    assert info.to_json() == obj

    plain = _load("_dataset-noprotocol.json")
    info2 = DatasetInfo.from_json(plain)
    assert info2.protocol is None and info2.image_size == (32, 24) and info2.channels == 3
    assert info2.to_json() == plain


def test_v1_encoder_config_loads_and_round_trips() -> None:
    obj = _load("config.json")
    cfg = EncoderConfig.from_dict(obj)
    assert (cfg.name, cfg.n_bits, cfg.image_size, cfg.channels) == ("resnet_small", 64, 28, 1)
    assert cfg.mean == (0.286,) and cfg.std == (0.353,) and cfg.n_classes == 10
    assert cfg.provenance == {"image_set": "/data/fmnist", "epochs": 2, "seed": 0}
    assert json.loads(cfg.to_json()) == obj


def test_format_errors_name_the_file_and_field() -> None:
    obj = _load("manifest.json")
    with pytest.raises(ValueError, match="format_version 3 is not supported"):
        Manifest.from_json({**obj, "format_version": 3}, source="m.json")
    bad = {**obj, "quantizer": {"sha256": "x"}}
    with pytest.raises(ValueError, match=r"m\.json.*quantizer"):
        Manifest.from_json(bad, source="m.json")
    info = _load("_dataset.json")
    with pytest.raises(ImageSetError, match="format_version 7"):
        DatasetInfo.from_json({**info, "format_version": 7})
    with pytest.raises(ImageSetError, match="channels"):
        DatasetInfo.from_json({**info, "channels": 2})


def test_unknown_fields_are_ignored_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    obj = {**_load("manifest.json"), "future_field": 1}
    caplog.set_level(logging.DEBUG)
    m = Manifest.from_json(obj)
    assert m == Manifest.from_json(_load("manifest.json"))
    assert "future_field" in caplog.text
    cfg = EncoderConfig.from_dict({**_load("config.json"), "future_field": 2})
    assert cfg.n_bits == 64
