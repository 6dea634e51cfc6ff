"""Fashion-MNIST for the quality benchmark: IDX files split as ``fmnist-1``, upsampling.

Split exactly like ``indexer.converters.fashion_mnist`` (numpy only; torch for upsampling).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def load_fmnist1(
    source: str, *, seed: int = 0, query_per_class: int = 100, train_per_class: int = 500
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train", "query", "database"}`` → (uint8[n, 28, 28, 1], int64 labels); the database
    holds the train split too (as in the image set's ``database_splits``)."""
    from indexer.converters.fashion_mnist import read_fashion_mnist
    from indexer.converters.splits import stratified_splits  # numpy only

    train_x, train_y = read_fashion_mnist(source, "train")
    test_x, test_y = read_fashion_mnist(source, "test")
    x = np.concatenate([train_x, test_x])
    y = np.concatenate([train_y, test_y])
    n_train = len(train_y)
    is_test = np.arange(len(y)) >= n_train
    split = stratified_splits(
        y.astype(np.int32),
        query_per_class=query_per_class,
        train_per_class=train_per_class,
        seed=seed,
        query_pool=is_test,
    )
    x = x[:, :, :, None]
    out = {}
    for name, mask in (
        ("train", split == "train"),
        ("query", split == "query"),
        ("database", split != "query"),
    ):
        out[name] = (np.ascontiguousarray(x[mask]), y[mask].astype(np.int64))
    return out


def to_model_input(x: Any, size: int, channels: int) -> Any:
    """float [n, 1, 28, 28] → bilinear upsample to ``size`` and repeat to ``channels``."""
    import torch.nn.functional as F

    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.repeat(1, channels, 1, 1) if channels != x.shape[1] else x


def upsample_uint8(images: np.ndarray, size: int, channels: int, device: str) -> np.ndarray:
    """uint8 [n, H, W, 1] → uint8 [n, size, size, channels] (bilinear, on ``device``)."""
    import torch

    out = np.empty((len(images), size, size, channels), dtype=np.uint8)
    for s in range(0, len(images), 512):
        t = torch.from_numpy(images[s : s + 512]).to(device).permute(0, 3, 1, 2).float()
        up = to_model_input(t, size, channels).round().clamp(0, 255).byte()
        out[s : s + len(t)] = up.permute(0, 2, 3, 1).cpu().numpy()
    return out
