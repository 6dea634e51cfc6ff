"""Ray Train: per-epoch checkpoints, a killed worker resumes from its checkpoint, DDP, --resume."""

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from odh_core.checkpoint import load_checkpoint
from odh_core.train import TrainConfig, train_encoder

BandImages = Callable[..., tuple[np.ndarray, np.ndarray]]  # the band_images fixture


def _cfg(**kw: object) -> TrainConfig:
    base = dict(
        model="resnet_small", n_bits=16, warmup_epochs=1, transition_epoch=1, stage2_epochs=1,
        batch_size=16, val_fraction=0.25, seed=0,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.mark.slow  # two Ray Train runs and a worker-group restart: ~2-4 min on 2 busy cores
def test_killed_worker_resumes_from_checkpoint_then_resume(
    ray_local: None, tmp_path: Path, band_images: BandImages
) -> None:
    images, labels = band_images(48, seed=0)
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
    assert (run_dir / "epoch-0002" / "train_state.json").exists()
    assert Path(summary["ray_checkpoint"], "train_state.safetensors").exists()
    # --resume of the finished run: restarts from its last state, trains nothing more
    again = train_encoder(images, labels, _cfg(fail_at_epoch=1), str(out), resume=True)
    _, cfg2 = load_checkpoint(again)
    assert cfg2.provenance["resumed_from_global_epoch"] == 2
    assert cfg2.provenance["history"] == hist


def test_resume_without_previous_run(
    ray_local: None, tmp_path: Path, band_images: BandImages
) -> None:
    images, labels = band_images(48, seed=2)
    with pytest.raises(FileNotFoundError, match="no previous training run"):
        train_encoder(images, labels, _cfg(), str(tmp_path / "out"), resume=True)


@pytest.mark.slow
def test_two_cpu_workers_ddp(ray_local: None, tmp_path: Path, band_images: BandImages) -> None:
    images, labels = band_images(64, seed=1)
    path = train_encoder(images, labels, _cfg(), str(tmp_path / "out"), workers=2)
    _, enc_cfg = load_checkpoint(path)
    assert enc_cfg.provenance["workers"] == 2
    assert [h["stage"] for h in enc_cfg.provenance["history"]] == [0, 1, 2]


def test_train_state_round_trip_without_pickle(tmp_path: Path) -> None:
    """A state like ``stages.fit`` makes (optimiser keyed by int, tuples, 128-bit RNG ints,
    tensors, arrays, inf) survives safetensors + JSON exactly, and loads with weights_only."""
    import torch

    from odh_core.train_state import STATE_TENSORS, load_train_state, save_train_state

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    sched.step()
    gen = torch.Generator().manual_seed(3)
    rng = np.random.default_rng([1, 2])
    state = {
        "phase": "hash",
        "global_epoch": 2,
        "module": {k: v.clone() for k, v in model.state_dict().items()},
        "opt": opt.state_dict(),
        "sched": sched.state_dict(),
        "best_map": float("-inf"),
        "best_state": None,
        "history": [{"global_epoch": 0, "loss": 1.5}],
        "rng": {"gen": gen.get_state(), "rng": rng.bit_generator.state},
        "centres": np.arange(6, dtype=np.float32).reshape(2, 3),
    }
    save_train_state(state, str(tmp_path))
    # the tensor file is plain safetensors: torch's safe loader path needs no pickle
    assert (tmp_path / STATE_TENSORS).stat().st_size > 0
    back = load_train_state(str(tmp_path))
    assert back["phase"] == "hash" and back["global_epoch"] == 2
    assert back["best_map"] == float("-inf") and back["best_state"] is None
    for k, v in state["module"].items():
        assert torch.equal(back["module"][k], v)
    assert set(back["opt"]["state"]) == set(state["opt"]["state"])  # int keys kept
    assert back["opt"]["param_groups"][0]["betas"] == state["opt"]["param_groups"][0]["betas"]
    assert isinstance(back["opt"]["param_groups"][0]["betas"], tuple)
    for p, s in state["opt"]["state"].items():
        for name, t in s.items():
            assert torch.equal(back["opt"]["state"][p][name], t)
    assert back["sched"] == state["sched"]
    np.testing.assert_array_equal(back["centres"], state["centres"])
    # restored RNGs continue the same streams
    gen2, rng2 = torch.Generator(), np.random.default_rng()
    gen2.set_state(back["rng"]["gen"])
    rng2.bit_generator.state = back["rng"]["rng"]
    assert torch.equal(torch.rand(5, generator=gen2), torch.rand(5, generator=gen))
    assert np.array_equal(rng2.integers(0, 2**62, 5), rng.integers(0, 2**62, 5))
    # and a fresh optimiser/scheduler accept the restored dicts
    opt2 = torch.optim.Adam(model.parameters(), lr=0.01)
    opt2.load_state_dict(back["opt"])
    sched2 = torch.optim.lr_scheduler.OneCycleLR(opt2, max_lr=0.1, total_steps=10)
    sched2.load_state_dict(back["sched"])
    assert sched2.state_dict() == sched.state_dict()


def test_train_state_refuses_unstorable_values(tmp_path: Path) -> None:
    from odh_core.train_state import save_train_state

    with pytest.raises(TypeError, match=r"state\.hook is a function"):
        save_train_state({"hook": lambda: None}, str(tmp_path))
