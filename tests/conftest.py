"""Shared test fixtures: one local Ray cluster per test session, seeded synthetic image sets,
free loopback ports and a digest of a model's weights."""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    import torch

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


def make_band_images(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` seeded 28×28×1 uint8 images of 4 classes (``labels = arange(n) % 4``): noise in
    0..59, plus 180 on the 7 rows ``c*7 .. c*7+6`` of class ``c`` (a bright horizontal band at
    each class's own height), so a small network can learn the classes in an epoch or two."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    images = rng.integers(0, 60, size=(n, 28, 28, 1), dtype=np.uint8)
    for c in range(4):
        images[labels == c, c * 7 : c * 7 + 7, :, 0] += 180
    return images, labels


@pytest.fixture(scope="session")
def band_images() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """The factory :func:`make_band_images`: ``band_images(n, seed=s) -> (images, labels)``."""
    return make_band_images


def digest_state(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state_dict (names and tensor bytes, in name order): equal iff the weights
    are bit for bit equal."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="session")
def state_digest() -> Callable[[Mapping[str, torch.Tensor]], str]:
    """:func:`digest_state`: ``state_digest(model.state_dict()) -> hex digest``."""
    return digest_state


def pick_free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS's pick for port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """A factory of free loopback ports, :func:`pick_free_port` (call it once per port needed).
    Session-scoped so module-scoped server fixtures can take it too."""
    return pick_free_port
