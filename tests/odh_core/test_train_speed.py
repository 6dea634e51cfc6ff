"""The training-speed settings compute what the reference path computes (issue 11 part 4).

``kernels="fused"`` vs ``"reference"``: the sign and the STE backwards are bit-identical; the
fused RPReLU gives bit-identical outputs and input gradients and parameter gradients equal to
float32 rounding (it sums them in float64). ``channels_last`` sums convolutions in another order:
float tolerance. Not timed (``odh bench train-speed`` measures the speed).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from odh_core.binary import (
    ApproxSign,
    ApproxSignReference,
    SignClipSTE,
    SignClipSTEReference,
    binarize_activation,
    sign,
    sign_reference,
)
from odh_core.config import TrainConfig
from odh_core.layers import RPReLU, set_kernels
from odh_core.losses import hash_centre_loss
from odh_core.models import create_encoder


def _edge_values(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 8, 5, 5, generator=g) * 1.5
    flat = x.view(-1)
    flat[:8] = torch.tensor([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1e-30, -1e-30])
    return x


def test_sign_fused_equals_reference_bit_for_bit() -> None:
    x = _edge_values()
    x.view(-1)[8] = float("nan")
    a, b = sign(x), sign_reference(x)
    assert torch.equal(a, b)
    assert a.view(-1)[:4].tolist() == [1.0, 1.0, 1.0, -1.0]  # sign(0) = sign(-0) = +1
    assert a.view(-1)[8].item() == -1.0 and a.dtype == x.dtype


@pytest.mark.parametrize(
    ("fused", "reference"), [(ApproxSign, ApproxSignReference), (SignClipSTE, SignClipSTEReference)]
)
def test_estimator_backward_fused_equals_reference(fused: type, reference: type) -> None:
    x = _edge_values(1)
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    outs = []
    for fn in (fused, reference):
        xx = x.clone().requires_grad_(True)
        y = fn.apply(xx)
        y.backward(grad)
        outs.append((y.detach(), xx.grad))
    assert torch.equal(outs[0][0], outs[1][0])
    assert torch.equal(outs[0][1], outs[1][1])
    # the Bi-Real slope itself at known points: 2 − 2|x| inside (−1, 1), 0 outside
    if fused is ApproxSign:
        pts = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.25, 1.0], requires_grad=True)
        ApproxSign.apply(pts).sum().backward()
        assert pts.grad.tolist() == [0.0, 0.0, 1.0, 2.0, 1.5, 0.0]


def test_binarize_activation_rejects_unknown_kernels() -> None:
    with pytest.raises(ValueError, match="kernels"):
        binarize_activation(torch.zeros(2), "approx", kernels="turbo")
    with pytest.raises(ValueError, match=r"TrainConfig\.kernels"):
        TrainConfig(kernels="turbo")


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_rprelu_matches_unfused(channels_last: bool) -> None:
    torch.manual_seed(0)
    m = RPReLU(16)
    with torch.no_grad():
        m.shift_in.normal_(0, 0.2)
        m.shift_out.normal_(0, 0.2)
        m.prelu.weight.uniform_(-0.5, 0.5)
    x = torch.randn(6, 16, 9, 9)
    x.view(-1)[:16] = m.shift_in.detach().view(-1)  # z == 0 exactly: the non-positive branch
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(6, 16, 9, 9)  # NCHW gradient for a channels_last input: converted
    res = {}
    for kernels in ("reference", "fused"):
        m.kernels = kernels
        m.zero_grad()
        xx = x.clone().requires_grad_(True)
        y = m(xx)
        y.backward(grad)
        res[kernels] = [y.detach(), xx.grad] + [
            p.grad.clone() for p in (m.shift_in, m.prelu.weight, m.shift_out)
        ]
    ref, fused = res["reference"], res["fused"]
    assert torch.equal(ref[0], fused[0]) and torch.equal(ref[1], fused[1])
    for a, b in zip(ref[2:], fused[2:], strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_fused_rprelu_falls_back_off_the_fast_path() -> None:
    m = RPReLU(4).double()
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    y = m(x)  # float64: the unfused graph (the fused kernel is float32-only)
    assert y.dtype == torch.float64 and y.grad_fn is not None
    assert "RPReLU" not in type(y.grad_fn).__name__


def _step_grads(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, centres: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = hash_centre_loss(torch.tanh(model(x)), centres, y, tau=0.2)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _batch(n: int = 12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(n, 1, 28, 28, generator=g)
    y = torch.nn.functional.one_hot(torch.arange(n) % 4, 4).float()
    centres = torch.where(torch.rand(4, 32, generator=g) < 0.5, -1.0, 1.0)
    return x, y, centres


@pytest.mark.parametrize("channels_last", [False, True])
def test_one_bnn_step_fused_vs_reference_same_loss_and_gradients(channels_last: bool) -> None:
    """In either memory format the fused kernels change no bit of the loss or of any gradient
    except the RPReLU parameters' (float64 sums: float32-rounding close)."""
    torch.manual_seed(0)
    ref = create_encoder("resnet_small", n_bits=32, binary=True, layer="reactnet")
    x, y, centres = _batch()
    if channels_last:
        ref = ref.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    fused = copy.deepcopy(ref)
    set_kernels(ref, "reference")
    set_kernels(fused, "fused")
    loss_r, grads_r = _step_grads(ref, x, y, centres)
    loss_f, grads_f = _step_grads(fused, x, y, centres)
    assert torch.equal(loss_r, loss_f)
    rprelu = [n for n in grads_r if ".post." in n]
    assert rprelu, "reactnet blocks carry RPReLU parameters"
    for name, g in grads_r.items():
        if name in rprelu:
            torch.testing.assert_close(grads_f[name], g, rtol=1e-4, atol=1e-6)
        else:
            assert torch.equal(grads_f[name], g), name


def test_one_step_channels_last_vs_nchw_same_loss_and_gradients() -> None:
    """channels_last convolutions sum in another order: the full-precision twin's loss and
    gradients agree to float tolerance. (In the BNN such a rounding difference can flip the sign
    of a pre-activation that is within rounding of 0, and the flip propagates: at
    initialisation about 2 of 300k first-block signs flip and ~1% of the last block's, so one
    step's loss differs by ~1e-3 relative — the same happens when the thread count changes the
    convolutions' summation order; ``odh bench train-speed`` records the epoch losses.)"""
    torch.manual_seed(0)
    nchw = create_encoder("resnet_small", n_bits=32, binary=False, layer="reactnet")
    cl = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    x, y, centres = _batch()
    loss_a, grads_a = _step_grads(nchw, x, y, centres)
    loss_b, grads_b = _step_grads(cl, x.contiguous(memory_format=torch.channels_last), y, centres)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-6)
    for name, g in grads_a.items():
        h = grads_b[name]
        if name == "hash_head.0.bias":
            # a bias right before BatchNorm1d has gradient 0 in exact arithmetic: rounding noise
            assert g.abs().max() < 1e-6 and h.abs().max() < 1e-6
            continue
        torch.testing.assert_close(h, g, rtol=1e-3, atol=1e-5)


def test_fit_fast_defaults_and_reference_path_train_and_checkpoint_nchw() -> None:
    """Both paths train (loss falls on a separable toy set) and the returned state is NCHW."""
    from odh_core.stages import LoopContext, fit

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 24)
    images = np.zeros((len(labels), 28, 28, 1), dtype=np.uint8)
    for i, c in enumerate(labels):  # a bright quadrant per class, plus noise
        images[i, (c // 2) * 14 : (c // 2) * 14 + 14, (c % 2) * 14 : (c % 2) * 14 + 14] = 200
    images = np.clip(images + rng.integers(0, 40, images.shape), 0, 255).astype(np.uint8)
    for overrides in ({}, {"kernels": "reference", "channels_last": False}):
        cfg = TrainConfig(
            n_bits=16, warmup_epochs=1, transition_epoch=2, stage2_epochs=1, batch_size=16,
            val_fraction=0.0, seed=0, **overrides,
        )  # fmt: skip
        result = fit(images, labels, cfg, LoopContext())
        stage1 = [r["loss"] for r in result.history if r["stage"] == 1]
        assert stage1[1] < stage1[0], (overrides, stage1)
        assert all(t.is_contiguous() for t in result.state_dict.values())


def test_bench_quick_writes_files(tmp_path: Path) -> None:
    from indexer.converters.fashion_mnist import fashion_mnist_source

    try:
        fashion_mnist_source(None)
    except FileNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST IDX files absent: {exc}")
    from benchmarks import train_speed as bench

    assert bench.main(["--quick", "--models", "bnn", "--output", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "train_speed.json").read_text())
    assert {(r["model"], r["threads"], r["form"]) for r in result["rows"]} == {
        ("bnn", 1, "before"),
        ("bnn", 1, "after"),
    }
    for r in result["rows"]:
        assert set(r["images_per_s"]) == {"all", "stage0", "stage1", "stage2"}
        assert all(v > 0 for v in r["images_per_s"].values())
    before = next(r for r in result["rows"] if r["form"] == "before")
    assert before["speedup"]["all"] == 1.0 and before["speedup_cpu"]["all"] == 1.0
    assert all(v > 0 for r in result["rows"] for v in r["images_per_cpu_s"].values())
    assert {d["stage"] for d in result["loss_agreement"]} == {"stage0", "stage1", "stage2"}
    # stage 0 (the FP warm-up classifier, same seed) barely moves between the forms
    stage0 = next(d for d in result["loss_agreement"] if d["stage"] == "stage0")
    assert stage0["abs_diff"] < 1e-3
    assert "load_average" in result["runs"][0] and result["machine"]["cpus"]
    assert "| bnn | 1 | after |" in (tmp_path / "train_speed.md").read_text()
    assert (tmp_path / "train_speed.png").stat().st_size > 0


def test_profile_lists_the_estimator_ops_before_and_not_after(tmp_path: Path) -> None:
    """The profile of the reference path shows the ``torch.where`` chains (and the PReLU
    backward) the fused kernels remove."""
    from indexer.converters.fashion_mnist import fashion_mnist_source

    try:
        fashion_mnist_source(None)
    except FileNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST IDX files absent: {exc}")
    from benchmarks import train_speed_profile as prof

    cfg = prof.Config(batch_size=8, steps=1, threads=(1,), top=100, output=str(tmp_path))
    assert prof.run(cfg) == 0
    result = json.loads((tmp_path / "train_speed_profile.json").read_text())
    ops = {(p["model"], p["form"]): {t["op"] for t in p["top"]} for p in result["profiles"]}
    assert "aten::where" in ops[("bnn", "before")] and "ApproxSignReferenceBackward" in str(
        ops[("bnn", "before")]
    )
    assert "aten::where" not in ops[("bnn", "after")]
    assert "_RPReLUBackward" in ops[("bnn", "after")]
    assert "## bnn, after, 1 thread(s)" in (tmp_path / "train_speed_profile.md").read_text()
