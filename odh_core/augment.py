"""Seeded batch augmentations as plain tensor ops (no torchvision/kornia), scaled for 28 px inputs.

Inputs are float tensors ``[n, C, H, W]`` in [0, 1] (before normalisation). Colour jitter on
grayscale images reduces to brightness and contrast (saturation and hue have no effect on one
channel); grayscale conversion applies to 3-channel inputs only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and magnitudes of each op."""

    p_crop: float
    p_flip: float
    p_jitter: float
    p_gray: float
    p_blur: float
    crop_scale: tuple[float, float] = (0.6, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    brightness: float = 0.4
    contrast: float = 0.8
    saturation: float = 0.8
    blur_sigma: tuple[float, float] = (0.1, 1.0)


STRONG = AugmentConfig(p_crop=1.0, p_flip=0.5, p_jitter=0.8, p_gray=0.2, p_blur=0.5)
WEAK = AugmentConfig(p_crop=0.5, p_flip=0.25, p_jitter=0.4, p_gray=0.1, p_blur=0.25)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _crop_flip(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    area = _uniform(n, *cfg.crop_scale, gen)
    log_r = _uniform(n, math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]), gen)
    ratio = torch.exp(log_r)
    sx = torch.sqrt(area * ratio).clamp(max=1.0)
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    crop = torch.rand(n, generator=gen) < cfg.p_crop
    sx = torch.where(crop, sx, torch.ones_like(sx))
    sy = torch.where(crop, sy, torch.ones_like(sy))
    tx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sx)
    ty = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sy)
    flip = torch.rand(n, generator=gen) < cfg.p_flip
    sx = torch.where(flip, -sx, sx)
    if not (crop.any() or flip.any()):
        return x
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sx, tx
    theta[:, 1, 1], theta[:, 1, 2] = sy, ty
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _jitter(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    on = (torch.rand(n, generator=gen) < cfg.p_jitter).to(x).view(n, 1, 1, 1)
    b = _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, gen).to(x).view(n, 1, 1, 1)
    c = _uniform(n, max(0.0, 1 - cfg.contrast), 1 + cfg.contrast, gen).to(x).view(n, 1, 1, 1)
    y = x * b
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - mean) * c + mean).clamp(0, 1)
    if x.shape[1] == 3:
        s = (
            _uniform(n, max(0.0, 1 - cfg.saturation), 1 + cfg.saturation, gen)
            .to(x)
            .view(n, 1, 1, 1)
        )
        gray = _to_gray(y)
        y = ((y - gray) * s + gray).clamp(0, 1)
    return on * y + (1 - on) * x


def _to_gray(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor([0.299, 0.587, 0.114]).to(x).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True).expand_as(x)


def _blur(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    n, ch, h, w = x.shape
    on = torch.rand(n, generator=gen) < cfg.p_blur
    sigma = _uniform(n, *cfg.blur_sigma, gen)
    if not on.any():
        return x
    offs = torch.tensor([-1.0, 0.0, 1.0])
    k1 = torch.exp(-(offs[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    k1 = k1 / k1.sum(dim=1, keepdim=True)
    k2 = (k1[:, :, None] * k1[:, None, :]).to(x)  # [n, 3, 3]
    kernels = k2.repeat_interleave(ch, dim=0).unsqueeze(1)  # [n·C, 1, 3, 3]
    y = F.conv2d(
        F.pad(x.reshape(1, n * ch, h, w), (1, 1, 1, 1), mode="replicate"), kernels, groups=n * ch
    )
    y = y.view(n, ch, h, w)
    return torch.where(on.to(x.device).view(n, 1, 1, 1), y, x)


def augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Crop+flip, colour jitter, grayscale (3-channel only) and blur with ``cfg`` probabilities."""
    if x.dim() != 4:
        raise ValueError(f"augment expects [n, C, H, W], got {tuple(x.shape)}")
    y = _crop_flip(x, cfg, gen)
    y = _jitter(y, cfg, gen)
    if y.shape[1] == 3:
        g = (torch.rand(y.shape[0], generator=gen) < cfg.p_gray).to(y.device).view(-1, 1, 1, 1)
        y = torch.where(g, _to_gray(y), y)
    return _blur(y, cfg, gen)
