import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odh_core.encoder import Encoder
from odh_core.train import TrainConfig, train_encoder


def _toy(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    images = rng.integers(0, 60, size=(n, 28, 28, 1), dtype=np.uint8)
    for c in range(4):
        images[labels == c, c * 7 : c * 7 + 7, :, 0] += 180
    return images, labels


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="method"):
        TrainConfig(method="nope")
    with pytest.raises(ValueError, match="n_bits"):
        TrainConfig(n_bits=10)
    cfg = TrainConfig(n_bits=16)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_train_encoder_through_ray(ray_local: None, tmp_path: Path) -> None:
    images, labels = _toy()
    cfg = TrainConfig(
        n_bits=16, warmup_epochs=1, transition_epoch=1, stage2_epochs=1, batch_size=16,
        val_fraction=0.25, seed=0,
    )  # fmt: skip
    path = train_encoder(images, labels, cfg, str(tmp_path / "out"))
    assert Path(path, "model.safetensors").exists()
    enc = Encoder.from_checkpoint(path, num_threads=1)
    assert enc.config.n_bits == 16 and enc.config.method == "odh" and enc.config.n_classes == 4
    assert enc.config.provenance["best_epoch"] in (0, 1)
    pngs = []
    for img in images[:6]:
        buf = io.BytesIO()
        Image.fromarray(img[:, :, 0], mode="L").save(buf, format="PNG")
        pngs.append(buf.getvalue())
    a = enc.encode_images(pngs)
    np.testing.assert_array_equal(a, Encoder.from_checkpoint(path).encode_images(pngs))
    assert a.shape == (6, 2)


@pytest.mark.parametrize(("method", "layer"), [("csq", "irnet"), ("odh", "bireal")])
def test_fit_in_process_other_methods(method: str, layer: str) -> None:
    from odh_core.stages import LoopContext, fit

    images, labels = _toy(32, seed=1)
    cfg = TrainConfig(
        n_bits=16, method=method, layer=layer, warmup_epochs=1, transition_epoch=1,
        stage2_epochs=1, batch_size=8, val_fraction=0.25,
    )  # fmt: skip
    result = fit(images, labels, cfg, LoopContext())
    assert result.best_val_map is not None and 0.0 <= result.best_val_map <= 1.0
    assert [h["stage"] for h in result.history][-2:] == [1, 2]
    assert "hash_head.0.weight" in result.state_dict
