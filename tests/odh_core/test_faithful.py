"""mode="faithful": weight-only "XNOR"; stage-2 pools from the training rows in every mode."""

import numpy as np
import pytest
import torch

from odh_core.layers import LAYER_CONFIGS, BasicBlock, BinaryActivation
from odh_core.stages import LoopContext, _split_data, fit
from odh_core.train import TrainConfig


def test_effective_layer_switch() -> None:
    assert TrainConfig(layer="xnor").effective_layer == "xnor"
    assert TrainConfig(layer="xnor", mode="faithful").effective_layer == "xnor_weight_only"
    assert TrainConfig(layer="reactnet", mode="faithful").effective_layer == "reactnet"
    with pytest.raises(ValueError, match="mode"):
        TrainConfig(mode="reference")
    with pytest.raises(ValueError, match="centres"):
        TrainConfig(method_config={"centres": "random"})


def test_weight_only_xnor_keeps_real_activations() -> None:
    x = torch.tensor([[[[-0.3, 0.7], [2.0, 0.0]]]])
    real = BinaryActivation(1, LAYER_CONFIGS["xnor_weight_only"])(x)
    true_1bit = BinaryActivation(1, LAYER_CONFIGS["xnor"])(x)
    assert torch.equal(real, x)
    assert true_1bit.view(-1).tolist() == [-1.0, 1.0, 1.0, 1.0]
    block = BasicBlock(2, 2, 1, binary=True, cfg=LAYER_CONFIGS["xnor_weight_only"])
    w = block.conv.weight.detach()
    alpha = w.abs().mean(dim=(1, 2, 3))
    inp = torch.randn(1, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.conv2d(
        inp, torch.sign(w) * alpha.view(-1, 1, 1, 1), padding=1
    )  # real input, binary weights
    torch.testing.assert_close(block.conv(inp), expected)


def _toy(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    labels = np.arange(n) % 4
    images = rng.integers(0, 255, size=(n, 28, 28, 1), dtype=np.uint8)
    return images, labels


def test_stage2_pools_are_the_training_rows_in_both_modes() -> None:
    images, labels = _toy()
    for mode in ("spec", "faithful"):
        cfg = TrainConfig(n_bits=16, val_fraction=0.25, batch_size=8, mode=mode)
        _, train, val, _, pool = _split_data(images, labels, cfg, LoopContext())
        assert pool is train and len(train) == 30 and val is not None and len(val) == 10


def test_faithful_fit_runs() -> None:
    images, labels = _toy(32)
    cfg = TrainConfig(
        n_bits=16, layer="xnor", mode="faithful", warmup_epochs=1, transition_epoch=1,
        stage2_epochs=1, batch_size=8, val_fraction=0.25,
    )  # fmt: skip
    result = fit(images, labels, cfg, LoopContext())
    assert [h["stage"] for h in result.history] == [0, 1, 2]
    assert not any("shift" in k for k in result.state_dict)
