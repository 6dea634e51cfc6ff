"""The packed network gives outputs (hence codes) bit-identical to the float model in eval mode."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from odh_core.checkpoint import EncoderConfig, save_checkpoint
from odh_core.encoder import Encoder
from odh_core.export import export_packed
from odh_core.layers import LAYER_CONFIGS
from odh_core.models import create_encoder
from odh_core.packed import PackedNet, PackedUnsupportedError, packed_unsupported_reason
from odh_core.packing import pack_bits

BINARY_LAYERS = sorted(k for k, v in LAYER_CONFIGS.items() if v.act_backward != "none")


def _trained_like(
    layer: str,
    *,
    name: str = "resnet_small",
    size: int = 28,
    ch: int = 1,
    images: torch.Tensor | None = None,
    n_bits: int = 64,
) -> torch.nn.Module:
    """A model with non-trivial BN statistics, shifts and PReLU slopes (weights untrained)."""
    torch.manual_seed(0)
    model = create_encoder(name, n_bits=n_bits, layer=layer, in_channels=ch, n_classes=10)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(images if images is not None else torch.randn(16, ch, size, size))
        gen = torch.Generator().manual_seed(1)
        for pname, p in model.named_parameters():
            if "shift" in pname or "prelu" in pname or pname.endswith("bn.weight"):
                p.add_(torch.randn(p.shape, generator=gen) * 0.2)
    return model.eval()


def _assert_identical(model: torch.nn.Module, x: torch.Tensor, chunk: int = 32) -> None:
    with torch.inference_mode():
        ref = model(x).numpy()
    got = PackedNet.from_model(model, chunk=chunk, verify_size=x.shape[-1])(x)
    np.testing.assert_array_equal(pack_bits(got >= 0), pack_bits(ref >= 0))
    np.testing.assert_array_equal(got, ref)  # not only the signs: every output bit


@pytest.mark.parametrize("layer", BINARY_LAYERS)
def test_all_binary_layers_identical_on_random_inputs(layer: str) -> None:
    model = _trained_like(layer)
    gen = torch.Generator().manual_seed(2)
    _assert_identical(model, torch.randn(40, 1, 28, 28, generator=gen), chunk=16)
    _assert_identical(model, torch.randn(1, 1, 28, 28, generator=gen))


@pytest.mark.parametrize("threads", [1, 2])
def test_fp_kernels_match_torch_at_28px(threads: int) -> None:
    """Stem conv + BN and AvgPool + 1×1 conv + BN shortcuts in numba sum in torch's order."""
    model = _trained_like("reactnet")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net = PackedNet.from_model(model, verify_size=None)
        assert net.fp_in_kernels and all(b.sc_w.size for b in net.blocks if b.sc_mode == 2)
        x = torch.randn(33, 1, 28, 28, generator=torch.Generator().manual_seed(5))
        with torch.inference_mode():
            ref = model(x).numpy()
        np.testing.assert_array_equal(net(x), ref)
        assert torch.get_num_threads() == threads  # the numba pool did not change torch's
    finally:
        torch.set_num_threads(before)


def test_verify_falls_back_to_torch_parts() -> None:
    model = _trained_like("xnor")
    net = PackedNet.from_model(model, verify_size=None)
    with torch.no_grad():  # make the kernels' shortcut disagree with the model's
        net.blocks[2].sc_w[0, 0] += 1.0
    assert not net.verify(model, in_channels=1, size=12)
    assert not net.fp_in_kernels and not net.blocks[2].fp_in_kernel
    x = torch.randn(3, 1, 12, 12, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        np.testing.assert_array_equal(net(x), model(x).numpy())


@pytest.mark.parametrize(("size", "layer"), [(27, "reactnet"), (13, "irnet"), (9, "bireal")])
def test_odd_input_sizes(size: int, layer: str) -> None:
    """Odd feature maps: strided blocks with a partial last window, every border class."""
    model = _trained_like(layer, size=size)
    x = torch.randn(5, 1, size, size, generator=torch.Generator().manual_seed(size))
    _assert_identical(model, x)


def test_resnet18_wide_channels_three_input_channels() -> None:
    model = _trained_like("reactnet", name="resnet18", size=40, ch=3, n_bits=32)
    _assert_identical(model, torch.randn(2, 3, 40, 40, generator=torch.Generator().manual_seed(3)))


def test_real_fashion_mnist_images() -> None:
    from indexer.converters.fashion_mnist import _find, fashion_mnist_source, read_idx

    try:
        source = fashion_mnist_source(None)
    except FileNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST IDX files absent: {exc}")
    images = read_idx(_find(source, "t10k-images-idx3-ubyte"))[:300]
    x = torch.from_numpy((images.astype(np.float32) / 255.0 - 0.5) / 0.5)[:, None]
    for layer in ("reactnet", "irnet"):
        model = _trained_like(layer, images=x[:64])
        _assert_identical(model, x)


def test_unsupported_models_are_named() -> None:
    fp = create_encoder("resnet_small", n_bits=16, binary=False)
    assert "full-precision" in (packed_unsupported_reason(fp) or "")
    with pytest.raises(PackedUnsupportedError):
        PackedNet.from_model(fp)
    weight_only = create_encoder("resnet_small", n_bits=16, layer="xnor_weight_only")
    assert "not binarised" in (packed_unsupported_reason(weight_only) or "")


def test_encoder_paths_checkpoint_and_export(tmp_path: Path) -> None:
    model = _trained_like("reactnet", n_bits=32)
    cfg = EncoderConfig(name="resnet_small", n_bits=32, n_classes=10)
    save_checkpoint(model, cfg, str(tmp_path / "ckpt"))
    export_packed(model, cfg, str(tmp_path / "export"))
    rng = np.random.default_rng(0)
    arrays = rng.standard_normal((70, 1, 28, 28)).astype(np.float32)
    packed = Encoder.from_checkpoint(str(tmp_path / "ckpt"), num_threads=1, batch_size=32)
    floated = Encoder.from_checkpoint(str(tmp_path / "ckpt"), inference="float", batch_size=32)
    exported = Encoder.from_checkpoint(str(tmp_path / "export"), num_threads=1)
    assert (packed.inference_path, floated.inference_path) == ("packed", "float")
    assert exported.inference_path == "packed"
    codes = packed.encode_arrays(arrays)
    np.testing.assert_array_equal(codes, floated.encode_arrays(arrays))
    np.testing.assert_array_equal(codes, exported.encode_arrays(arrays))
    assert os.path.exists(tmp_path / "export" / "packed.safetensors")
    with pytest.raises(ValueError, match="inference"):
        Encoder(model, cfg, inference="xnor")


def test_encoder_full_precision_twin_uses_float() -> None:
    twin = create_encoder("resnet_small", n_bits=16, binary=False)
    enc = Encoder(twin, EncoderConfig(name="resnet_small", n_bits=16, binary=False))
    assert enc.inference_path == "float"
    assert enc.encode_arrays(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 2)
