"""Every registered hashing method: forward, finite loss, gradients reach the encoder, a short
training run that learns (mAP far above the label-shuffled baseline), config round trips."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from odh_core.config import TrainConfig
from odh_core.methods import create_method, get_method_class, list_methods, method_config
from odh_core.methods.base import MethodSetup, StepInput
from odh_core.metrics import evaluate_codes
from odh_core.models import create_encoder
from odh_core.packing import pack_bits
from odh_core.stages import LoopContext, fit
from odh_core.trainmodule import HashTrainModule

N_BITS = 16
SIDE = 16


def _separable(n_per_class: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """4 classes × n images of SIDE px: class c lights up its own quadrant over dim noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), n_per_class)
    images = rng.integers(0, 60, size=(len(labels), SIDE, SIDE, 1), dtype=np.uint8)
    h = SIDE // 2
    for c in range(4):
        r, q = divmod(c, 2)
        images[labels == c, r * h : (r + 1) * h, q * h : (q + 1) * h, 0] += 170
    return images, labels


def _setup(name: str) -> tuple[HashTrainModule, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    images, labels = _separable(8)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2)).float() / 255.0
    y = torch.nn.functional.one_hot(torch.from_numpy(labels), 4).float()
    method = create_method(name)
    encoder = create_encoder("resnet_small", n_bits=N_BITS, binary=True, in_channels=1)
    classifier = None
    if method.needs_classifier:
        classifier = create_encoder(
            "resnet_small", n_bits=N_BITS, binary=False, n_classes=4, in_channels=1
        )
    method.setup(
        MethodSetup(
            n_bits=N_BITS, n_classes=4, seed=0, images=x, targets=y, n_rows=len(x),
            encoder=encoder, classifier=classifier, normalise=lambda v: (v - 0.3) / 0.3,
        )
    )  # fmt: skip
    return HashTrainModule(encoder, method), x, y


@pytest.mark.parametrize("name", list_methods())
@pytest.mark.parametrize("stage", [1, 2])
def test_forward_loss_and_gradients(name: str, stage: int) -> None:
    module, x, y = _setup(name)
    module.train()
    xb = (x - 0.3) / 0.3
    x_in = xb if stage == 1 else torch.cat([xb, xb.flip(3)])
    u, extras = module(x_in, xb)
    assert u.shape == (len(x_in), N_BITS)
    step = StepInput(
        u=u, n_views=stage, targets=y, idx=torch.arange(len(x)), extras=extras,
        progress=0.5, n_pos=2, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    loss = module.method.loss(step, stage)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in module.encoder.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0  # the loss reaches the encoder


@pytest.mark.parametrize("name", list_methods())
def test_config_is_frozen_validated_and_named(name: str) -> None:
    cls = get_method_class(name).config_class
    cfg = method_config(name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.__setattr__(dataclasses.fields(cls)[0].name, 1)  # type: ignore[misc]
    with pytest.raises(ValueError, match=f"{name!r} has no option"):
        method_config(name, {"no_such_knob": 1})
    with pytest.raises(ValueError, match="method_config"):
        TrainConfig(method=name, method_config={"no_such_knob": 1})


def test_method_config_values_are_checked() -> None:
    with pytest.raises(ValueError, match=r"OdhConfig\.tau"):
        create_method("odh", tau=0.0)
    with pytest.raises(ValueError, match=r"CsqConfig\.lam"):
        TrainConfig(method="csq", method_config={"lam": -1.0}).create_method()
    with pytest.raises(ValueError, match="ExpoConfig"):
        create_method("expo", beta_start=5.0, beta_end=1.0)
    assert create_method("odh", centres="hadamard").needs_classifier is False
    assert TrainConfig(method="odh", method_config={"centres": "hadamard"}).n_warmup_epochs == 0


def test_legacy_train_config_keys_move_into_method_config() -> None:
    old = {**TrainConfig().to_dict(), "tau": 0.3, "centres": "hadamard", "csq_lambda": 0.5}
    old.pop("method_config")
    cfg = TrainConfig.from_dict(old)
    assert cfg.method_config == {"tau": 0.3, "centres": "hadamard"}  # csq_lambda: not odh's
    csq = TrainConfig.from_dict({**old, "method": "csq"})
    assert csq.method_config == {"lam": 0.5}


def _codes(model: torch.nn.Module, images: np.ndarray, mean: tuple, std: tuple) -> np.ndarray:
    model.eval()
    x = torch.from_numpy(images.transpose(0, 3, 1, 2)).float() / 255.0
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    with torch.no_grad():
        return pack_bits((model((x - m) / s) >= 0).numpy())


def _train_codes(name: str, images: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    cfg = TrainConfig(
        model="resnet_small", n_bits=N_BITS, binary=False, method=name, warmup_epochs=2,
        transition_epoch=2, stage2_epochs=1, batch_size=32, val_fraction=0.0,
        lr=1e-3, lr_max=3e-3, seed=0,
    )  # fmt: skip
    result = fit(images, labels, cfg, LoopContext())
    model = create_encoder("resnet_small", n_bits=N_BITS, binary=False, in_channels=1)
    model.load_state_dict(result.state_dict)
    return _codes(model, images, result.mean, result.std)


@pytest.mark.parametrize("name", list_methods())
def test_short_training_learns(name: str) -> None:
    """mAP of the trained codes (train = database = query) well above the label-shuffled
    baseline of the same codes and above the untrained encoder (which already scores ~0.2 over
    the baseline on this easy set); bdnn-unsup trains without the labels."""
    torch.set_num_threads(1)
    images, labels = _separable()
    needs_labels = get_method_class(name).needs_labels
    codes = _train_codes(name, images, labels if needs_labels else None)
    rel = np.eye(4, dtype=bool)[labels]
    got = evaluate_codes(codes, rel, codes, rel, n_bits=N_BITS, seed=0)["map_all_tie_aware"]
    shuffled = np.eye(4, dtype=bool)[np.random.default_rng(1).permutation(labels)]
    base = evaluate_codes(codes, shuffled, codes, shuffled, n_bits=N_BITS, seed=0)
    torch.manual_seed(0)
    untrained = create_encoder("resnet_small", n_bits=N_BITS, binary=False, in_channels=1)
    x = images.astype(np.float32) / 255.0
    c0 = _codes(untrained, images, (float(x.mean()),), (float(x.std()),))
    before = evaluate_codes(c0, rel, c0, rel, n_bits=N_BITS, seed=0)["map_all_tie_aware"]
    assert got > base["map_all_tie_aware"] + 0.5, (name, got, base["map_all_tie_aware"])
    assert got > before + 0.3, (name, got, before)


def test_label_method_refuses_unlabelled_set_before_work() -> None:
    images, _ = _separable(4)
    with pytest.raises(ValueError, match=r"'csq' needs class labels.*'label' column"):
        fit(images, None, TrainConfig(method="csq", n_bits=N_BITS), LoopContext())


@pytest.mark.parametrize("name", list_methods())
def test_checkpoint_round_trips_method_config(name: str, tmp_path: Path) -> None:
    from odh_core.checkpoint import EncoderConfig, load_checkpoint, save_checkpoint

    knobs = dataclasses.asdict(method_config(name))
    cfg = TrainConfig(method=name, n_bits=N_BITS, method_config=knobs)
    model = create_encoder("resnet_small", n_bits=N_BITS, binary=True, in_channels=1)
    enc_cfg = EncoderConfig(
        name="resnet_small", n_bits=N_BITS, method=name,
        provenance={"train_config": cfg.to_dict(), "method_config": cfg.full_method_config()},
    )  # fmt: skip
    save_checkpoint(model, enc_cfg, str(tmp_path / "ck"))
    _, loaded = load_checkpoint(str(tmp_path / "ck"))
    assert loaded.method == name
    back = TrainConfig.from_dict(loaded.provenance["train_config"])
    assert back == cfg and back.parsed_method_config() == method_config(name, knobs)


def test_method_docs_are_in_sync() -> None:
    from odh_core.methods.doc import render_method_options

    text = (Path(__file__).resolve().parents[2] / "docs" / "method.md").read_text()
    assert render_method_options() in text, (
        "run: python -m odh_core.methods.doc --write docs/method.md"
    )
