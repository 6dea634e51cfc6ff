"""Safe image decoding: byte limit before decode, pixel limit from the header, fixed shape."""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000


class ImageDecodeError(ValueError):
    """An image could not be decoded or violates the size limits."""


def decode_image(
    data: bytes,
    *,
    image_size: int,
    channels: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode encoded image bytes to ``uint8[image_size, image_size, channels]``.

    The byte size is checked before decoding and the pixel count from the header before the pixel
    data is loaded (decompression-bomb safe). Images are converted to L (channels=1) or RGB
    (channels=3) and resized bilinearly when their size differs from ``image_size``.
    """
    from PIL import Image

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ImageDecodeError(f"image data must be bytes, got {type(data).__name__}")
    n_bytes = len(data)
    if n_bytes == 0:
        raise ImageDecodeError("image data is empty")
    if n_bytes > max_bytes:
        raise ImageDecodeError(f"image is {n_bytes} bytes, over the limit of {max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(bytes(data)))
            width, height = img.size
            if width <= 0 or height <= 0:
                raise ImageDecodeError(f"image has invalid size {width}x{height}")
            if width * height > max_pixels:
                raise ImageDecodeError(
                    f"image is {width}x{height} = {width * height} pixels, "
                    f"over the limit of {max_pixels}"
                )
            img.load()
            img = img.convert("L" if channels == 1 else "RGB")
            if img.size != (image_size, image_size):
                img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"image rejected as a decompression bomb: {exc}") from exc
    except Exception as exc:
        raise ImageDecodeError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr)
