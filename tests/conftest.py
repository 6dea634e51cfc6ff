"""Shared test fixtures: one local Ray cluster per test session, seeded synthetic image sets."""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TQDM_DISABLE", "1")
# Serve kills a proxy actor that is not ready after 3 checks of 5 s; on a loaded 2-core machine
# the proxy's worker can take longer than that to start, and Serve then restarts it in a loop.
os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "30")


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """Start one embedded 2-CPU Ray cluster for the whole session (Ray starts are slow)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",  # never join a cluster another process started on this machine
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    yield
    try:
        from ray import serve

        serve.shutdown()
    except Exception:  # Serve may never have started
        pass
    ray.shutdown()


@pytest.fixture
def synthetic_set(tmp_path: Path) -> Path:
    """A seeded class-structured image set: 4 classes × 12 images of 28×28, written as Parquet."""
    from indexer.converters.synthetic import make_synthetic

    out = tmp_path / "images"
    make_synthetic(str(out), n_classes=4, per_class=12, image_size=28, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An untrained 16-bit `resnet_small` checkpoint (4 classes): enough to exercise the jobs."""
    import torch

    from odh_core.checkpoint import EncoderConfig, save_checkpoint
    from odh_core.models import create_encoder

    torch.manual_seed(0)
    model = create_encoder("resnet_small", n_bits=16, n_classes=4)
    config = EncoderConfig(name="resnet_small", n_bits=16, n_classes=4, provenance={"test": True})
    path = tmp_path_factory.mktemp("tiny-encoder") / "checkpoint"
    return save_checkpoint(model, config, str(path))


def write_idx(path: Path, array: np.ndarray) -> None:
    """One gzip IDX file (Fashion-MNIST's format: magic, big-endian dims, uint8 data)."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def idx_writer() -> Callable[[Path, np.ndarray], None]:
    """:func:`write_idx` (test modules take helpers as fixtures: ``from conftest import`` would
    depend on which conftest module was imported last)."""
    return write_idx


@pytest.fixture
def fake_fmnist() -> Callable[..., Path]:
    """A factory of tiny fake Fashion-MNIST IDX directories (seeded):
    ``fake_fmnist(root, per_train, per_test, n_classes=4, separable=True, shuffle=False)``.
    ``separable`` brightens a band of rows per class (so a model can learn it), else the pixels
    are uniform noise; ``shuffle`` permutes the label order."""

    def make(
        root: Path,
        per_train: int,
        per_test: int,
        *,
        n_classes: int = 4,
        separable: bool = True,
        shuffle: bool = False,
    ) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        for part, per in (("train", per_train), ("t10k", per_test)):
            labels = np.repeat(np.arange(n_classes), per).astype(np.uint8)
            if shuffle:
                labels = rng.permutation(labels)
            if separable:
                images = rng.integers(0, 50, size=(len(labels), 28, 28)).astype(np.uint8)
                band = 28 // n_classes
                for c in range(n_classes):
                    images[labels == c, c * band : (c + 1) * band, :] += 200
            else:
                images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
            write_idx(root / f"{part}-images-idx3-ubyte.gz", images)
            write_idx(root / f"{part}-labels-idx1-ubyte.gz", labels)
        return root

    return make
