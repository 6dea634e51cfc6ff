"""Packed binary weights: export → load gives identical codes; stats; bad exports are rejected."""

from pathlib import Path

import numpy as np
import pytest
import torch

from odh_core.checkpoint import CheckpointError, EncoderConfig
from odh_core.export import PACKED_FILE, PackedBinaryConv2d, export_packed, load_packed
from odh_core.models import create_encoder, model_stats
from odh_core.packing import pack_bits


def _trained_like(layer: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_encoder("resnet_small", n_bits=32, layer=layer)
    model.train()
    with torch.no_grad():  # non-trivial BN statistics
        for _ in range(3):
            model(torch.randn(8, 1, 28, 28))
    return model.eval()


@pytest.mark.parametrize("layer", ["reactnet", "irnet", "xnor"])
def test_packed_round_trip_identical_codes(layer: str, tmp_path: Path) -> None:
    model = _trained_like(layer)
    cfg = EncoderConfig(name="resnet_small", n_bits=32, layer=layer)
    info = export_packed(model, cfg, str(tmp_path / "packed"))
    loaded, cfg2 = load_packed(str(tmp_path / "packed"))
    assert cfg2 == cfg
    assert sum(isinstance(m, PackedBinaryConv2d) for m in loaded.modules()) == 6
    x = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = model(x), loaded(x)
    np.testing.assert_array_equal(pack_bits(a.numpy()), pack_bits(b.numpy()))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    stats = model_stats(model, 28)
    assert info["binary_weight_bytes"] == stats["binary_params"] // 8  # 9·C_in bits per row
    assert info["file_bytes"] < stats["fp32_bytes"] / 2


def test_model_stats_binary_share() -> None:
    stats = model_stats(create_encoder("resnet_small", n_bits=64), 28)
    fp = model_stats(create_encoder("resnet_small", n_bits=64, binary=False), 28)
    assert 0.5 < stats["binary_mac_fraction"] < 1.0 and fp["binary_mac_fraction"] == 0.0
    assert stats["packed_bytes"] < stats["fp32_bytes"] / 4
    assert stats["binary_params"] > 0.8 * stats["params"] and fp["binary_params"] == 0


def test_load_packed_rejects_missing_and_mismatched(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="missing"):
        load_packed(str(tmp_path))
    model = _trained_like("reactnet")
    export_packed(model, EncoderConfig(name="resnet_small", n_bits=32), str(tmp_path / "p"))
    (tmp_path / "p" / "config.json").write_text(
        EncoderConfig(name="resnet_small", n_bits=64).to_json()
    )
    with pytest.raises((CheckpointError, RuntimeError)):
        load_packed(str(tmp_path / "p"))
    assert (tmp_path / "p" / PACKED_FILE).exists()


def test_export_v2_keeps_only_what_codes_need(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    torch.manual_seed(0)
    model = create_encoder("resnet_small", n_bits=32, layer="reactnet", n_classes=10).eval()
    assert any(k.startswith("classifier") for k in model.state_dict())
    cfg = EncoderConfig(name="resnet_small", n_bits=32, layer="reactnet", n_classes=10)
    export_packed(model, cfg, str(tmp_path / "p"))
    keys = set(load_file(str(tmp_path / "p" / PACKED_FILE)))
    assert not any(k.startswith("classifier") or "num_batches_tracked" in k for k in keys)
    assert sum(k.endswith(".weight_bits") for k in keys) == 6
    loaded, _ = load_packed(str(tmp_path / "p"))
    assert getattr(loaded, "n_classes", None) is None  # the classifier is not part of inference
    conv = loaded.body[0].conv
    assert isinstance(conv, PackedBinaryConv2d)
    torch.testing.assert_close(conv.weight.abs().amax(dim=(1, 2, 3)), conv.scale)
