"""Encode uint8 pixel arrays as PNG bytes for image sets."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8[H, W] or uint8[H, W, C] (C in 1, 3) → PNG bytes."""
    if pixels.dtype != np.uint8:
        raise TypeError(f"pixels must be uint8, got {pixels.dtype}")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ValueError(f"pixels must be [H, W] or [H, W, 1|3], got shape {pixels.shape}")
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def encode_pngs(images: np.ndarray) -> list[bytes]:
    """uint8[n, H, W(, C)] → list of PNG bytes."""
    return [encode_png(img) for img in images]
