"""In-memory training data: images/labels as tensors, normalisation, seeded split, group sampler."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

logger = logging.getLogger(__name__)


def labels_to_multihot(
    labels: np.ndarray | Sequence[Sequence[int] | np.ndarray | None], n_classes: int | None = None
) -> np.ndarray:
    """Labels → multi-hot ``bool[n, n_classes]``: the one conversion of every stage.

    ``labels`` is one of: class ids ``int[n]`` (single-label); a multi-hot ``[n, C]`` array; or
    a sequence of per-row label lists (multi-label; ``None`` or an empty list: no label, an
    all-False row), as the image set's ``label`` list<int32> column holds them.
    ``n_classes`` defaults to the largest label + 1. A label outside ``[0, n_classes)`` or a
    multi-hot width other than ``n_classes`` raises ValueError naming ``label``.
    """
    if n_classes is not None and n_classes < 0:
        raise ValueError(f"n_classes must be >= 0, got {n_classes}")
    if isinstance(labels, np.ndarray) and labels.dtype != object:
        arr = labels
        if arr.ndim == 2:
            if n_classes is not None and arr.shape[1] != n_classes:
                raise ValueError(
                    f"label: multi-hot labels have {arr.shape[1]} columns, expected {n_classes}"
                )
            return arr.astype(bool)
        if arr.ndim != 1:
            raise ValueError(f"label: expected int[n] or multi-hot [n, C], got shape {arr.shape}")
        lengths = np.ones(arr.shape[0], dtype=np.int64)
        flat = arr
    else:
        rows_list = list(labels)
        lengths = np.array([0 if r is None else len(r) for r in rows_list], dtype=np.int64)
        parts = [np.asarray(r).reshape(-1) for r in rows_list if r is not None and len(r)]
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if flat.dtype.kind not in "iub" and not (
        flat.dtype.kind == "f" and np.all(np.mod(flat, 1) == 0)
    ):
        raise ValueError(f"label: labels must be integers, got dtype {flat.dtype}")
    flat = flat.astype(np.int64)
    c = (int(flat.max()) + 1 if flat.size else 0) if n_classes is None else n_classes
    if flat.size and (flat.min() < 0 or flat.max() >= c):
        raise ValueError(f"label: values outside [0, {c}) (min {flat.min()}, max {flat.max()})")
    out = np.zeros((len(lengths), c), dtype=bool)
    out[np.repeat(np.arange(len(lengths)), lengths), flat] = True
    return out


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
