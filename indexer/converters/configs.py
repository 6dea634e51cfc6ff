"""Configs of the ``odh data ...`` converters: one frozen dataclass per source kind.

Light on purpose (no numpy/pyarrow): the command line and ``docs/cli.md`` are generated from these
fields. ``indexer.converters.run_converter(config)`` runs the converter a config describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from odh_core.options import option

__all__ = [
    "FASHION_MNIST_PROTOCOLS",
    "Cifar10Config",
    "FashionMnistConfig",
    "FolderConfig",
    "ParquetConfig",
    "SyntheticConfig",
    "list_fashion_mnist_protocols",
]

_OUTPUT_HELP = "image-set directory or s3:// prefix"


FASHION_MNIST_PROTOCOLS = ("fmnist-1", "fmnist-2")


def list_fashion_mnist_protocols() -> list[str]:
    """The split protocols the Fashion-MNIST converter writes."""
    return list(FASHION_MNIST_PROTOCOLS)


def _check_common(cfg: Any) -> None:
    name = type(cfg).__name__
    if not cfg.output:
        raise ValueError(f"{name}.output is required")
    if getattr(cfg, "rows_per_part", 1) < 1:
        raise ValueError(f"{name}.rows_per_part must be >= 1, got {cfg.rows_per_part}")
    for field_name in ("query_per_class", "train_per_class"):
        value = getattr(cfg, field_name, 0)
        if value is not None and value < 0:
            raise ValueError(f"{name}.{field_name} must be >= 0, got {value}")
    size = getattr(cfg, "image_size", None)
    if size is not None and size < 1:
        raise ValueError(f"{name}.image_size must be >= 1, got {size}")


@dataclass(frozen=True)
class FashionMnistConfig:
    """Convert the Fashion-MNIST IDX files into an image set with protocol splits."""

    output: str = option(help=_OUTPUT_HELP)
    source: str | None = option(
        None,
        help="IDX directory (default: $ODH_FASHION_MNIST, else /usr/share/datasets/fashion-mnist)",
    )
    protocol: str = option("fmnist-1", help="split protocol", choices=list_fashion_mnist_protocols)
    seed: int = option(0, help="seed of the split")
    rows_per_part: int = option(10_000, help="rows per part-*.parquet")

    def __post_init__(self) -> None:
        _check_common(self)
        if self.protocol not in list_fashion_mnist_protocols():
            raise ValueError(
                f"FashionMnistConfig.protocol must be one of {list_fashion_mnist_protocols()}, "
                f"got {self.protocol!r}"
            )


@dataclass(frozen=True)
class SyntheticConfig:
    """Small class-structured synthetic images (tests, smoke runs)."""

    output: str = option(help=_OUTPUT_HELP)
    n_classes: int = option(4, help="classes", flag="--classes")
    per_class: int = option(24, help="images per class")
    image_size: int = option(28, help="image side (pixels)")
    seed: int = option(0, help="random seed")

    def __post_init__(self) -> None:
        _check_common(self)
        if self.n_classes < 1:
            raise ValueError(f"SyntheticConfig.n_classes must be >= 1, got {self.n_classes}")
        if self.per_class < 2:
            raise ValueError(f"SyntheticConfig.per_class must be >= 2, got {self.per_class}")
        if self.image_size < 4:
            raise ValueError(f"SyntheticConfig.image_size must be >= 4, got {self.image_size}")


@dataclass(frozen=True)
class Cifar10Config:
    """Convert the CIFAR-10 python batches."""

    source: str = option(help="directory with data_batch_1..5, test_batch")
    output: str = option(help=_OUTPUT_HELP)
    query_per_class: int = option(100, help="query images per class")
    train_per_class: int = option(500, help="training images per class")
    seed: int = option(0, help="seed of the split")
    rows_per_part: int = option(10_000, help="rows per part-*.parquet")
    storage_options: dict[str, Any] | None = option(None, help="fsspec storage options (JSON)")

    def __post_init__(self) -> None:
        _check_common(self)


@dataclass(frozen=True)
class FolderConfig:
    """An image folder with one subfolder per class (ROOT/CLASS/IMAGE)."""

    source: str = option(help="root folder: ROOT/CLASS/IMAGE")
    output: str = option(help=_OUTPUT_HELP)
    name: str | None = option(None, help="data set name (default: the folder name)")
    image_size: int | None = option(None, help="image side (default: the first image's)")
    query_per_class: int = option(0, help="query images per class")
    train_per_class: int = option(0, help="training images per class")
    seed: int = option(0, help="seed of the split")
    rows_per_part: int = option(10_000, help="rows per part-*.parquet")
    storage_options: dict[str, Any] | None = option(None, help="fsspec storage options (JSON)")

    def __post_init__(self) -> None:
        _check_common(self)


@dataclass(frozen=True)
class ParquetConfig:
    """Any Parquet data set, given a column mapping."""

    source: str = option(help="Parquet file or directory (or s3://)")
    output: str = option(help=_OUTPUT_HELP)
    image_col: str = option("image", help="binary or {bytes: ...} image column")
    id_col: str | None = option(None, help="int ids (default: row number)")
    label_col: str | None = option(None, help="int, list<int> or class-name labels")
    key_col: str | None = option(None, help="string keys")
    split_col: str | None = option(None, help="train/query/database split column")
    name: str = option("parquet", help="data set name")
    image_size: int | None = option(None, help="image side (default: the first image's)")
    query_per_class: int = option(0, help="query images per class")
    train_per_class: int = option(0, help="training images per class")
    seed: int = option(0, help="seed of the split")
    rows_per_part: int = option(10_000, help="rows per part-*.parquet")
    storage_options: dict[str, Any] | None = option(None, help="fsspec storage options (JSON)")

    def __post_init__(self) -> None:
        _check_common(self)
        if not self.image_col:
            raise ValueError("ParquetConfig.image_col must be a column name")
