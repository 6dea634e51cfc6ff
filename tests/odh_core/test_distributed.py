"""Ray Train: per-epoch checkpoints, a killed worker resumes from its checkpoint, DDP, --resume."""

import json
from pathlib import Path

import numpy as np
import pytest

from odh_core.checkpoint import load_checkpoint
from odh_core.train import TrainConfig, train_encoder


def _toy(n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    images = rng.integers(0, 60, size=(n, 28, 28, 1), dtype=np.uint8)
    for c in range(4):
        images[labels == c, c * 7 : c * 7 + 7, :, 0] += 180
    return images, labels


def _cfg(**kw: object) -> TrainConfig:
    base = dict(
        model="resnet_small", n_bits=16, warmup_epochs=1, transition_epoch=1, stage2_epochs=1,
        batch_size=16, val_fraction=0.25, seed=0,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.mark.slow  # two Ray Train runs and a worker-group restart: ~2-4 min on 2 busy cores
def test_killed_worker_resumes_from_checkpoint_then_resume(ray_local: None, tmp_path: Path) -> None:
    images, labels = _toy()
    out = tmp_path / "out"
    # global epochs: 0 = warm-up, 1 = stage 1, 2 = stage 2; rank 0 dies after epoch 1's checkpoint
    path = train_encoder(images, labels, _cfg(fail_at_epoch=1), str(out), max_failures=1)
    assert list((out / "ray_train").glob("killed-at-epoch-1")), "the worker was never killed"
    _, enc_cfg = load_checkpoint(path)
    assert enc_cfg.provenance["resumed_from_global_epoch"] == 1
    hist = enc_cfg.provenance["history"]
    assert [h["global_epoch"] for h in hist] == [0, 1, 2]  # epoch 2 ran once, after the restart
    summary = json.loads((out / "train_result.json").read_text())
    assert summary["metrics"]["resumed_from"] == 1
    run_dir = out / "ray_train" / summary["run_name"]
    assert (run_dir / "epoch-0002" / "train_state.pt").exists()
    assert Path(summary["ray_checkpoint"], "train_state.pt").exists()
    # --resume of the finished run: restarts from its last state, trains nothing more
    again = train_encoder(images, labels, _cfg(fail_at_epoch=1), str(out), resume=True)
    _, cfg2 = load_checkpoint(again)
    assert cfg2.provenance["resumed_from_global_epoch"] == 2
    assert cfg2.provenance["history"] == hist


def test_resume_without_previous_run(ray_local: None, tmp_path: Path) -> None:
    images, labels = _toy(seed=2)
    with pytest.raises(FileNotFoundError, match="no previous training run"):
        train_encoder(images, labels, _cfg(), str(tmp_path / "out"), resume=True)


@pytest.mark.slow
def test_two_cpu_workers_ddp(ray_local: None, tmp_path: Path) -> None:
    images, labels = _toy(64, seed=1)
    path = train_encoder(images, labels, _cfg(), str(tmp_path / "out"), workers=2)
    _, enc_cfg = load_checkpoint(path)
    assert enc_cfg.provenance["workers"] == 2
    assert [h["stage"] for h in enc_cfg.provenance["history"]] == [0, 1, 2]
