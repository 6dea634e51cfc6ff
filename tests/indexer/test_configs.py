"""Stage configs at the library boundary: one training-split rule, config-or-kwargs builds,
validated encode configs, converter configs that run their converter."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from indexer.build import BuildConfig, build
from indexer.converters import SyntheticConfig, run_converter
from indexer.encode import EncodeConfig, encode
from indexer.imageset import load_arrays, read_info
from indexer.training import load_train_split, train_encoder
from odh_core.config import TrainConfig


def test_train_split_is_the_protocols(tmp_path: Path) -> None:
    path = str(tmp_path / "set")
    info = run_converter(SyntheticConfig(output=path, n_classes=3, per_class=12, seed=1))
    images, labels = load_train_split(path)
    assert len(images) == info.counts["train"] == 3 * 4
    _, expected, expected_labels = load_arrays(path, ["train"])
    np.testing.assert_array_equal(images, expected)
    np.testing.assert_array_equal(labels, expected_labels)
    assert read_info(path).protocol.train_splits == ("train",)


def test_train_encoder_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        train_encoder(str(tmp_path), {"n_bits": 16}, str(tmp_path / "out"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="run must be a TrainRunConfig"):
        train_encoder(str(tmp_path), TrainConfig(), str(tmp_path / "o"), run={"workers": 2})  # type: ignore[arg-type]


def test_build_refuses_config_and_keywords_together(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"not both \(got config and \['n_shards'\]\)"):
        build("codes", str(tmp_path), config=BuildConfig(n_shards=2), n_shards=3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'shards'"):
        build("codes", str(tmp_path), shards=3)


def test_encode_takes_a_validated_config() -> None:
    with pytest.raises(TypeError, match="EncodeConfig"):
        encode("images")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"EncodeConfig\.num_cpus"):
        EncodeConfig("i", "c", "o", num_cpus=0)
    with pytest.raises(ValueError, match=r"EncodeConfig\.image_set"):
        EncodeConfig("", "c", "o")


def test_configs_are_frozen_and_validated() -> None:
    cfg = SyntheticConfig(output="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"SyntheticConfig\.per_class"):
        SyntheticConfig(output="x", per_class=1)
    with pytest.raises(ValueError, match="quantizer"):
        BuildConfig(quantizer="ivfpq")


def _converter_pairs():
    from indexer.converters import (
        Cifar10Config,
        FashionMnistConfig,
        FolderConfig,
        ParquetConfig,
    )
    from indexer.converters.cifar10 import convert_cifar10
    from indexer.converters.fashion_mnist import convert_fashion_mnist
    from indexer.converters.folder import convert_folder
    from indexer.converters.parquet_source import ColumnMapping, convert_parquet
    from indexer.converters.synthetic import make_synthetic

    return [
        (FashionMnistConfig, convert_fashion_mnist, {}),
        (SyntheticConfig, make_synthetic, {}),
        (Cifar10Config, convert_cifar10, {}),
        (FolderConfig, convert_folder, {}),
        (ParquetConfig, convert_parquet, {
            f"{f.name}_col": f.default for f in dataclasses.fields(ColumnMapping)
        }),
    ]  # fmt: skip


def test_converter_defaults_are_their_configs_defaults() -> None:
    """The converter functions keep keyword defaults; they must equal the configs' (no drift)."""
    import inspect

    for cls, func, extra in _converter_pairs():
        params = inspect.signature(func).parameters
        for f in dataclasses.fields(cls):
            if f.default is dataclasses.MISSING:
                continue
            if f.name in extra:
                assert extra[f.name] == f.default, (cls.__name__, f.name)
            elif f.name in params and params[f.name].default is not inspect.Parameter.empty:
                assert params[f.name].default == f.default, (cls.__name__, f.name)
