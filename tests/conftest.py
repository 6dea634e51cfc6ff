"""Shared test fixtures: one local Ray cluster per test session, seeded synthetic image sets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

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
