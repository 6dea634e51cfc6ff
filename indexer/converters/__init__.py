"""Converters: write an image set from a source (Fashion-MNIST, CIFAR-10, a folder, Parquet,
synthetic). Each source kind has a config in :mod:`indexer.converters.configs`;
:func:`run_converter` runs the converter a config describes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from indexer.converters.configs import (
    Cifar10Config,
    FashionMnistConfig,
    FolderConfig,
    ParquetConfig,
    SyntheticConfig,
)

if TYPE_CHECKING:
    from indexer.imageset import DatasetInfo

__all__ = [
    "Cifar10Config",
    "FashionMnistConfig",
    "FolderConfig",
    "ParquetConfig",
    "SyntheticConfig",
    "run_converter",
]


def run_converter(config: Any) -> DatasetInfo:
    """Write the image set ``config`` describes; returns its ``DatasetInfo``."""
    if isinstance(config, FashionMnistConfig):
        from indexer.converters.fashion_mnist import convert_fashion_mnist, fashion_mnist_source

        return convert_fashion_mnist(
            fashion_mnist_source(config.source),
            config.output,
            protocol=config.protocol,
            seed=config.seed,
            rows_per_part=config.rows_per_part,
        )
    if isinstance(config, SyntheticConfig):
        from indexer.converters.synthetic import make_synthetic

        return make_synthetic(
            config.output,
            n_classes=config.n_classes,
            per_class=config.per_class,
            image_size=config.image_size,
            seed=config.seed,
        )
    if isinstance(config, Cifar10Config):
        from indexer.converters.cifar10 import convert_cifar10

        return convert_cifar10(
            config.source,
            config.output,
            seed=config.seed,
            rows_per_part=config.rows_per_part,
            query_per_class=config.query_per_class,
            train_per_class=config.train_per_class,
            storage_options=config.storage_options,
        )
    if isinstance(config, FolderConfig):
        from indexer.converters.folder import convert_folder

        return convert_folder(
            config.source,
            config.output,
            name=config.name,
            image_size=config.image_size,
            query_per_class=config.query_per_class,
            train_per_class=config.train_per_class,
            seed=config.seed,
            rows_per_part=config.rows_per_part,
            storage_options=config.storage_options,
        )
    if isinstance(config, ParquetConfig):
        from indexer.converters.parquet_source import ColumnMapping, convert_parquet

        return convert_parquet(
            config.source,
            config.output,
            columns=ColumnMapping(
                image=config.image_col,
                id=config.id_col,
                label=config.label_col,
                key=config.key_col,
                split=config.split_col,
            ),
            name=config.name,
            image_size=config.image_size,
            query_per_class=config.query_per_class,
            train_per_class=config.train_per_class,
            seed=config.seed,
            rows_per_part=config.rows_per_part,
            storage_options=config.storage_options,
        )
    raise TypeError(f"no converter for a {type(config).__name__}")
