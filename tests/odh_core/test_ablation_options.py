"""The options that may close the BNN → full-precision gap (issue 11 part 3): distillation from
the full-precision classifier, two-step training, initialising from the full-precision twin and
a wider ``resnet_small``. Each is off by default; each still learns on the separable toy set."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from odh_core.binary import binarize_weight
from odh_core.checkpoint import EncoderConfig, save_checkpoint
from odh_core.config import TrainConfig
from odh_core.init_from import load_init_weights
from odh_core.layers import BinaryConv2d, get_layer_config, set_real_weights
from odh_core.losses import distillation_loss
from odh_core.methods.base import StepInput
from odh_core.methods.odh import OdhConfig, OdhMethod
from odh_core.metrics import evaluate_codes
from odh_core.models import create_encoder
from odh_core.packing import pack_bits
from odh_core.stages import LoopContext, fit

BandImages = Callable[..., tuple[np.ndarray, np.ndarray]]  # the band_images fixture


# ------------------------------------------------------------------ (a) distillation


def test_distillation_loss_by_hand() -> None:
    """KL(softmax(z/T) ‖ softmax(cos(h, c)/τ)) computed by hand on a 1×2 code, 2 centres."""
    h = torch.tensor([[3.0, 4.0]])  # ‖h‖ = 5
    centres = torch.tensor([[1.0, 1.0], [1.0, -1.0]])  # /√2
    logits = torch.tensor([[2.0, 0.0]])
    tau, temp = 0.5, 2.0
    cos = [(3 + 4) / (5 * math.sqrt(2)), (3 - 4) / (5 * math.sqrt(2))]
    s = [c / tau for c in cos]
    log_q = [v - math.log(sum(math.exp(w) for w in s)) for v in s]
    z = [2.0 / temp, 0.0]
    log_p = [v - math.log(sum(math.exp(w) for w in z)) for v in z]
    want = sum(math.exp(lp) * (lp - lq) for lp, lq in zip(log_p, log_q, strict=True))
    got = distillation_loss(h, centres, logits, tau=tau, temperature=temp)
    assert got.item() == pytest.approx(want, rel=1e-5)  # float32
    # zero when the student's softmax equals the teacher's
    same = distillation_loss(h, centres, torch.tensor([s]), tau=tau, temperature=1.0)
    assert same.item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="teacher_logits"):
        distillation_loss(h, centres, torch.zeros(1, 3))


def _method(**knobs: Any) -> OdhMethod:
    """An OdhMethod whose classifier is stubbed: loss_terms reads only extras and config."""
    return OdhMethod(OdhConfig(**knobs))


def test_distill_term_in_both_stages_and_off_by_default() -> None:
    gen = torch.Generator().manual_seed(0)
    n, k, c = 4, 8, 2
    centres = torch.sign(torch.randn(c, k, generator=gen))
    y = torch.eye(c)[torch.tensor([0, 1, 0, 1])]
    u1 = torch.randn(n, k, generator=gen)
    u2 = torch.randn(2 * n, k, generator=gen)
    logits = torch.randn(n, c, generator=gen)
    ex = {"centres": centres, "logits": logits}
    s1 = StepInput(u=u1, n_views=1, targets=y, idx=torch.arange(n), extras=ex)
    s2 = StepInput(u=u2, n_views=2, targets=y, idx=torch.arange(n), extras=ex, n_pos=2)
    assert "distill" not in _method().loss_terms(s1, 1)
    assert "distill" not in _method().loss_terms(s2, 2)
    m = _method(w_distill=0.5, distill_temperature=2.0)
    w, v = m.loss_terms(s1, 1)["distill"]
    assert w == 0.5
    want = distillation_loss(torch.tanh(u1), centres, logits, tau=0.2, temperature=2.0)
    assert v.item() == pytest.approx(want.item(), rel=1e-6)
    # stage 2: on the strong view (rows n…2n−1), the view the classifier sees
    _, v2 = m.loss_terms(s2, 2)["distill"]
    want2 = distillation_loss(torch.tanh(u2[n:]), centres, logits, tau=0.2, temperature=2.0)
    assert v2.item() == pytest.approx(want2.item(), rel=1e-6)
    # the total loss carries it with its weight
    base = _method().loss(s1, 1)
    assert m.loss(s1, 1).item() == pytest.approx(base.item() + 0.5 * v.item(), rel=1e-6)


def test_distill_config_validation() -> None:
    with pytest.raises(ValueError, match="w_distill"):
        OdhConfig(w_distill=-1.0)
    with pytest.raises(ValueError, match="distill_temperature"):
        OdhConfig(distill_temperature=0.0)
    with pytest.raises(ValueError, match="semantic"):
        OdhConfig(w_distill=1.0, centres="hadamard")
    with pytest.raises(ValueError, match="w_distill"):  # not the reference behaviour
        TrainConfig(method_config={"w_distill": 1.0}, mode="faithful", layer="xnor")


# ------------------------------------------------------------------ (b) two-step


def test_binary_conv_real_weights_switch() -> None:
    torch.manual_seed(0)
    conv = BinaryConv2d(4, 6, 3, padding=1, bias=False, cfg=get_layer_config("reactnet"))
    x = torch.randn(2, 4, 5, 5)
    real = F.conv2d(x, conv.weight, None, 1, 1)
    binary = F.conv2d(x, binarize_weight(conv.weight, "scaled"), None, 1, 1)
    assert not torch.allclose(real, binary)
    conv.train()
    torch.testing.assert_close(conv(x), binary)  # default: binary weights
    assert set_real_weights(conv, True) == 1
    torch.testing.assert_close(conv(x), real)
    conv.eval()  # evaluation (and so validation and export) always uses the binary weights
    torch.testing.assert_close(conv(x), binary, rtol=1e-5, atol=1e-5)
    conv.train()
    set_real_weights(conv, False)
    torch.testing.assert_close(conv(x), binary)


def test_two_step_switches_in_the_middle_of_stage1(
    monkeypatch: pytest.MonkeyPatch, band_images: BandImages
) -> None:
    """In fit: the training forwards of the first half of stage 1's steps convolve with the
    real weights, every later one with the binary weights; latent weights get no decay."""
    import odh_core.stages as stages

    seen: list[str] = []
    built: list[torch.nn.Module] = []

    def hook(mod: BinaryConv2d, inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        if not mod.training:
            return
        x = inp[0]
        args = (None, mod.stride, mod.padding)
        real = F.conv2d(x, mod.weight, *args)
        binary = F.conv2d(x, binarize_weight(mod.weight, mod.cfg.weight_mode), *args)
        seen.append(
            "real" if torch.equal(out, real) else "binary" if torch.equal(out, binary) else "?"
        )

    def create(*a: Any, **kw: Any) -> torch.nn.Module:
        model = create_encoder(*a, **kw)
        if kw.get("binary", True):
            conv = next(m for m in model.modules() if isinstance(m, BinaryConv2d))
            conv.register_forward_hook(hook)
            built.append(model)
        return model

    monkeypatch.setattr(stages, "create_encoder", create)
    opts: list[Any] = []
    real_optimizer = stages._optimizer
    monkeypatch.setattr(
        stages, "_optimizer", lambda *a: opts.append(real_optimizer(*a)) or opts[-1]
    )
    images, labels = band_images(32, seed=1)
    cfg = TrainConfig(
        n_bits=16, warmup_epochs=1, transition_epoch=2, stage2_epochs=1, batch_size=8,
        val_fraction=0.25, two_step=True,
    )  # fmt: skip
    fit(images, labels, cfg, LoopContext())
    steps1 = 24 // 8  # 24 training rows
    assert seen[:steps1] == ["real"] * steps1  # the first half of stage 1's 2 × 3 steps
    assert seen[steps1:] == ["binary"] * (len(seen) - steps1) and len(seen) > 2 * steps1
    assert not any(m.real_weights for m in built[0].modules() if isinstance(m, BinaryConv2d))
    groups = opts[0].param_groups
    latent = {id(m.weight) for m in built[0].modules() if isinstance(m, BinaryConv2d)}
    assert {id(p) for p in groups[1]["params"]} == latent and groups[1]["weight_decay"] == 0.0
    assert groups[0]["weight_decay"] == cfg.weight_decay and latent.isdisjoint(
        id(p) for p in groups[0]["params"]
    )
    with pytest.raises(ValueError, match="two_step"):
        TrainConfig(two_step=True, binary=False)


# ------------------------------------------------------------------ (c) init from the twin


def _fp_twin_checkpoint(
    tmp_path: Path, band_images: BandImages
) -> tuple[str, dict[str, torch.Tensor]]:
    images, labels = band_images(32, seed=1)
    cfg = TrainConfig(
        n_bits=16, binary=False, warmup_epochs=1, transition_epoch=1, stage2_epochs=1,
        batch_size=8, val_fraction=0.25,
    )  # fmt: skip
    result = fit(images, labels, cfg, LoopContext())
    model = create_encoder("resnet_small", n_bits=16, binary=False)
    model.load_state_dict(result.state_dict)
    path = str(tmp_path / "fp")
    save_checkpoint(model, EncoderConfig(name="resnet_small", n_bits=16, binary=False), path)
    return path, result.state_dict


def test_init_from_loads_matching_tensors(tmp_path: Path, band_images: BandImages) -> None:
    path, fp_state = _fp_twin_checkpoint(tmp_path, band_images)
    bnn = create_encoder("resnet_small", n_bits=16, binary=True)
    n = load_init_weights(bnn, path)
    state = bnn.state_dict()
    shared = [k for k in state if k in fp_state and state[k].shape == fp_state[k].shape]
    assert n == len(shared) and n >= 40  # stem, convs, BNs, shortcuts, hash head
    for k in (
        "stem.0.weight",
        "body.0.conv.weight",
        "body.5.bn.running_mean",
        "hash_head.0.weight",
    ):
        assert torch.equal(state[k], fp_state[k]), k
    assert "body.0.post.prelu.weight" not in fp_state  # the twin's PReLU is named post.weight
    # nothing matches: a clear error naming the mismatch
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"init_from.*no tensor"):
        load_init_weights(bnn, str(tmp_path / "other.pt"))
    with pytest.raises(ValueError, match="no checkpoint"):
        load_init_weights(bnn, str(tmp_path / "missing"))


# ------------------------------------------------------------------ (d) wide encoder


def test_wide_resnet_small_packed_encode_equals_torch() -> None:
    from odh_core.packed import PackedNet
    from odh_core.packing import pack_bits

    torch.manual_seed(0)
    wide = create_encoder("resnet_small_wide", n_bits=32)
    base = create_encoder("resnet_small", n_bits=32)
    assert wide.feature_dim == 2 * base.feature_dim
    wide.train()
    with torch.no_grad():
        for _ in range(2):
            wide(torch.randn(8, 1, 28, 28))
    wide.eval()
    x = torch.randn(20, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ref = wide(x).numpy()
    got = PackedNet.from_model(wide, chunk=8, verify_size=28)(x)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(pack_bits(got >= 0), pack_bits(ref >= 0))


# ------------------------------------------------------------------ every option still learns


def _learned_and_chance(cfg: TrainConfig, band_images: BandImages) -> tuple[float, float]:
    images, labels = band_images(32, seed=1)
    result = fit(images, labels, cfg, LoopContext())
    model = create_encoder(cfg.model, n_bits=cfg.n_bits, binary=cfg.binary, in_channels=1)
    model.load_state_dict(result.state_dict)
    model.eval()
    held, held_labels = band_images(64, seed=7)  # queries rows 0..31, database rows 32..63
    mean = np.asarray(result.mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(result.std, np.float32).reshape(1, -1, 1, 1)
    x = (held.transpose(0, 3, 1, 2).astype(np.float32) / 255 - mean) / std
    with torch.no_grad():
        bits = model(torch.from_numpy(x)).numpy() >= 0
    codes = pack_bits(bits)

    def map_of(lab: np.ndarray) -> float:
        m = evaluate_codes(codes[:32], lab[:32], codes[32:], lab[32:], n_bits=cfg.n_bits)
        return float(m["map_all_tie_aware"])

    chance = max(map_of(np.random.default_rng(s).permutation(held_labels)) for s in range(5))
    return map_of(held_labels), chance


_BASE = dict(
    n_bits=16, warmup_epochs=1, transition_epoch=2, stage2_epochs=2, batch_size=8,
    val_fraction=0.25,
)  # fmt: skip


@pytest.mark.parametrize(
    "knobs",
    [
        {"method_config": {"w_distill": 1.0}},
        {"two_step": True},
        {"model": "resnet_small_wide"},
        {"init_from": "FP"},
    ],
    ids=["distill", "two-step", "wide", "init-from-fp"],
)
def test_each_option_still_learns(
    knobs: dict[str, Any], tmp_path: Path, band_images: BandImages
) -> None:
    if knobs.get("init_from") == "FP":
        knobs = {"init_from": _fp_twin_checkpoint(tmp_path, band_images)[0]}
    cfg = TrainConfig(**_BASE, **knobs)
    assert {k: cfg.to_dict()[k] for k in knobs} == knobs  # recorded in the run's config
    learned, chance = _learned_and_chance(cfg, band_images)
    assert learned >= chance + 0.25, (knobs, learned, chance)


def test_options_off_by_default_and_recorded() -> None:
    cfg = TrainConfig()
    d = cfg.to_dict()
    assert (d["two_step"], d["init_from"], d["model"]) == (False, "", "resnet_small")
    full = cfg.full_method_config()
    assert (full["w_distill"], full["distill_temperature"]) == (0.0, 1.0)
    assert TrainConfig.from_dict(dataclasses.replace(cfg, two_step=True).to_dict()).two_step
