import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from odh_core.augment import STRONG, WEAK, augment
from odh_core.checkpoint import CheckpointError, EncoderConfig, load_checkpoint, save_checkpoint
from odh_core.data import GroupBatchSampler, split_indices
from odh_core.encoder import Encoder
from odh_core.images import ImageDecodeError
from odh_core.models import create_encoder, list_encoders, model_stats


def test_registry_and_shapes() -> None:
    assert {"resnet_small", "resnet18"} <= set(list_encoders())
    torch.manual_seed(0)
    m = create_encoder("resnet_small", n_bits=32, n_classes=5)
    x = torch.randn(4, 1, 28, 28)
    assert m(x).shape == (4, 32) and m.features(x).shape == (4, 128)
    assert m.classify(x).shape == (4, 5)
    fp = create_encoder("resnet_small", n_bits=16, binary=False, in_channels=3)
    assert fp(torch.randn(2, 3, 32, 32)).shape == (2, 16)
    stats = model_stats(m, 28)
    assert stats["binary_mac_fraction"] > 0.9 and stats["packed_bytes"] < stats["fp32_bytes"]
    assert model_stats(fp, 32, 3)["binary_mac_fraction"] == 0.0
    with pytest.raises(ValueError, match="unknown encoder"):
        create_encoder("nope", n_bits=16)
    with pytest.raises(ValueError, match="n_bits"):
        create_encoder("resnet_small", n_bits=12)
    with pytest.raises(ValueError, match="layer"):
        create_encoder("resnet_small", n_bits=16, layer="bnn")


def _config() -> EncoderConfig:
    return EncoderConfig(name="resnet_small", n_bits=16, mean=(0.3,), std=(0.2,))


def test_checkpoint_round_trip_and_tamper(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_encoder("resnet_small", n_bits=16).eval()
    path = save_checkpoint(model, _config(), str(tmp_path / "ckpt"))
    loaded, cfg = load_checkpoint(path)
    assert cfg == _config()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert sorted(p.name for p in Path(path).iterdir()) == [
        "checksums.json",
        "config.json",
        "model.safetensors",
    ]
    cfg_file = Path(path) / "config.json"
    cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "n_bits": 32}))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(str(tmp_path / "absent"))


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def test_encoder_deterministic(tmp_path: Path) -> None:
    torch.manual_seed(1)
    path = save_checkpoint(
        create_encoder("resnet_small", n_bits=16), _config(), str(tmp_path / "c")
    )
    enc = Encoder.from_checkpoint(path, num_threads=1)
    rng = np.random.default_rng(0)
    imgs = [_png(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for _ in range(5)]
    a = enc.encode_images(imgs)
    b = enc.encode_images(list(reversed(imgs)))[::-1]
    assert a.shape == (5, 2) and a.dtype == np.uint8 and enc.n_bits == 16
    np.testing.assert_array_equal(a, b)
    x = enc.preprocess(imgs[0])
    assert x.shape == (1, 28, 28) and x.dtype == np.float32
    np.testing.assert_array_equal(enc.encode_arrays(x[None]), a[:1])
    with pytest.raises(ImageDecodeError, match="image 1"):
        enc.encode_images([imgs[0], b"junk"])


def test_augment_seeded_and_bounded() -> None:
    x = torch.rand(8, 1, 28, 28)
    a = augment(x, STRONG, torch.Generator().manual_seed(0))
    b = augment(x, STRONG, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    assert a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)
    rgb = augment(torch.rand(4, 3, 32, 32), WEAK, torch.Generator().manual_seed(1))
    assert rgb.shape == (4, 3, 32, 32)


def test_split_and_group_sampler() -> None:
    tr, va = split_indices(100, 0.1, seed=3)
    assert len(va) == 10 and len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 100
    tr2, _ = split_indices(100, 0.1, seed=3)
    np.testing.assert_array_equal(tr, tr2)
    labels = np.repeat(np.arange(4), 5)
    targets = np.eye(4, dtype=bool)[labels]
    sampler = GroupBatchSampler(targets, batch_size=8, n_pos=2, n_batches=3)
    batches = list(sampler.batches(np.random.default_rng(0)))
    assert len(batches) == 3
    for batch in batches:
        groups = labels[batch].reshape(-1, 2)
        assert (groups[:, 0] == groups[:, 1]).all()
