"""In-memory training data: images/labels as tensors, normalisation, seeded split, group sampler."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from odh_core.labels import labels_to_multihot

__all__ = [
    "GroupBatchSampler",
    "TrainData",
    "labels_to_multihot",
    "shuffled_batches",
    "split_indices",
]

logger = logging.getLogger(__name__)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation split of ``range(n)`` (validation gets at least one item if > 0)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = 0 if val_fraction == 0 else min(n - 1, max(1, round(n * val_fraction)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@dataclass
class TrainData:
    """Images as float ``[n, C, H, W]`` in [0, 1], multi-hot targets, per-channel mean/std."""

    images: torch.Tensor
    targets: torch.Tensor  # float [n, C] multi-hot
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_arrays(cls, images: np.ndarray, targets: np.ndarray) -> TrainData:
        arr = np.asarray(images)
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] not in (1, 3):
            raise ValueError(
                f"images must be uint8[n, H, W, C] with C in (1, 3), got {arr.dtype}{arr.shape}"
            )
        if arr.shape[1] != arr.shape[2]:
            raise ValueError(f"images must be square, got {arr.shape[1]}x{arr.shape[2]}")
        x = torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))).float() / 255.0
        mean = tuple(float(v) for v in x.mean(dim=(0, 2, 3)))
        std = tuple(max(float(v), 1e-3) for v in x.std(dim=(0, 2, 3)))
        return cls(x, torch.from_numpy(np.asarray(targets, dtype=np.float32)), mean, std)

    def subset(self, idx: np.ndarray) -> TrainData:
        t = torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(self.images.device)
        return TrainData(self.images[t], self.targets[t], self.mean, self.std)

    def to(self, device: torch.device) -> TrainData:
        """The same data on ``device`` (batches are then cut and augmented there)."""
        return TrainData(self.images.to(device), self.targets.to(device), self.mean, self.std)

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and targets of the rows ``idx`` (on the data's device)."""
        t = torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(self.images.device)
        return self.images[t], self.targets[t]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        m = torch.tensor(self.mean).view(1, -1, 1, 1).to(x)
        s = torch.tensor(self.std).view(1, -1, 1, 1).to(x)
        return (x - m) / s

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.targets.shape[1])


def shuffled_batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Shuffled index batches; a last batch of a single item is dropped."""
    perm = rng.permutation(n)
    for start in range(0, n, batch_size):
        batch = perm[start : start + batch_size]
        if len(batch) > 1 or n == 1:
            yield batch


class GroupBatchSampler:
    """Class-balanced batches of groups of ``n_pos`` same-class images (stage 2).

    Per-class pools are built from the given (already split) training targets. Each batch draws
    ``batch_size // n_pos`` classes uniformly and ``n_pos`` images per class (with replacement only
    when a pool is smaller than ``n_pos``). Rows of a group are consecutive.
    """

    def __init__(self, targets: np.ndarray, batch_size: int, n_pos: int, n_batches: int) -> None:
        t = np.asarray(targets, dtype=bool)
        if n_pos < 1 or batch_size < n_pos:
            raise ValueError(
                f"need 1 <= n_pos <= batch_size, got n_pos={n_pos}, batch_size={batch_size}"
            )
        self.pools = [np.nonzero(t[:, c])[0] for c in range(t.shape[1])]
        self.classes = np.array([c for c, p in enumerate(self.pools) if len(p) > 0])
        if len(self.classes) == 0:
            raise ValueError("no class has any training image")
        self.groups = batch_size // n_pos
        self.n_pos = n_pos
        self.n_batches = max(1, n_batches)

    def batches(self, rng: np.random.Generator) -> Iterator[np.ndarray]:
        for _ in range(self.n_batches):
            classes = rng.choice(self.classes, size=self.groups, replace=True)
            rows = []
            for c in classes:
                pool = self.pools[c]
                rows.append(rng.choice(pool, size=self.n_pos, replace=len(pool) < self.n_pos))
            yield np.concatenate(rows)
