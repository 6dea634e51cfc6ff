"""Every registered backbone builds, binary and full-precision, and runs at its input size."""

from __future__ import annotations

import pytest
import torch

from odh_core.layers import BinaryConv2d
from odh_core.models import create_encoder, default_input_size, list_encoders


def test_registry_lists_the_backbones() -> None:
    assert {"resnet_small", "resnet18"} <= set(list_encoders())
    with pytest.raises(ValueError, match="unknown encoder"):
        default_input_size("nope")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "full-precision"])
@pytest.mark.parametrize("name", list_encoders())
def test_every_encoder_builds_and_runs(name: str, binary: bool) -> None:
    torch.manual_seed(0)
    size = default_input_size(name)
    model = create_encoder(name, n_bits=32, binary=binary, n_classes=5, in_channels=3).eval()
    n_binary = sum(isinstance(m, BinaryConv2d) for m in model.modules())
    assert (n_binary > 0) == binary
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        u = model(x)
        logits = model.classify(x)
    assert u.shape == (2, 32) and torch.isfinite(u).all()
    assert logits.shape == (2, 5)
    assert not torch.equal(u[0], u[1])  # different images, different outputs
