"""Safe image decoding: byte limit before decode, pixel limit from the header, fixed shape.

:class:`ImageLimits` is the one image-size policy of every stage: converters and image-set
validation (``indexer.imageset``), training's decode, the encode job and the query encoder
(``odh_core.encoder.Encoder``) and the serving request schema all take their limits from
:data:`DEFAULT_IMAGE_LIMITS`, so an image accepted at one stage is never rejected for its size at
another.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


#: The image formats any stage decodes (Pillow format names). Everything else — EPS/PS (which
#: would run Ghostscript), PDF, ICNS, SGI, exotic plug-ins — is refused before a decoder runs.
ALLOWED_IMAGE_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")


class ImageDecodeError(ValueError):
    """An image could not be decoded or violates the size limits."""


@dataclass(frozen=True)
class ImageLimits:
    """Largest encoded image (bytes, checked before decoding) and largest image (pixels, checked
    from the header before the pixel data is loaded: decompression-bomb safe)."""

    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ImageLimits.{name} must be a positive int, got {value!r}")

    def check_bytes(self, n_bytes: int) -> None:
        """ImageDecodeError when an encoded image of ``n_bytes`` is empty or over the limit."""
        if n_bytes == 0:
            raise ImageDecodeError("image data is empty")
        if n_bytes > self.max_bytes:
            raise ImageDecodeError(f"image is {n_bytes} bytes, over the limit of {self.max_bytes}")

    def check_pixels(self, width: int, height: int) -> None:
        """ImageDecodeError when a ``width`` x ``height`` image is empty or over the limit."""
        if width <= 0 or height <= 0:
            raise ImageDecodeError(f"image has invalid size {width}x{height}")
        if width * height > self.max_pixels:
            raise ImageDecodeError(
                f"image is {width}x{height} = {width * height} pixels, "
                f"over the limit of {self.max_pixels}"
            )


DEFAULT_IMAGE_LIMITS = ImageLimits()
DEFAULT_MAX_BYTES = DEFAULT_IMAGE_LIMITS.max_bytes  # for callers that pass the two numbers
DEFAULT_MAX_PIXELS = DEFAULT_IMAGE_LIMITS.max_pixels


def _open_allowed(image_module: Any, data: bytes) -> Any:
    """``Image.open`` restricted to :data:`ALLOWED_IMAGE_FORMATS` (others: ImageDecodeError)."""
    try:
        return image_module.open(io.BytesIO(data), formats=list(ALLOWED_IMAGE_FORMATS))
    except image_module.UnidentifiedImageError:
        raise ImageDecodeError(
            "cannot decode image: not one of the accepted formats "
            f"({', '.join(ALLOWED_IMAGE_FORMATS)})"
        ) from None


def probe_image(data: bytes) -> tuple[str, int, int]:
    """``(format, width, height)`` of an encoded image from its header only (no pixel data is
    decoded; formats outside :data:`ALLOWED_IMAGE_FORMATS` raise ImageDecodeError)."""
    from PIL import Image

    try:
        with _open_allowed(Image, bytes(data)) as img:
            return str(img.format), int(img.size[0]), int(img.size[1])
    except ImageDecodeError:
        raise
    except Exception as exc:
        raise ImageDecodeError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc


def decode_image(
    data: bytes,
    *,
    image_size: int,
    channels: int,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    limits: ImageLimits = DEFAULT_IMAGE_LIMITS,
) -> np.ndarray:
    """Decode encoded image bytes to ``uint8[image_size, image_size, channels]``.

    The byte size is checked before decoding and the pixel count from the header before the pixel
    data is loaded (decompression-bomb safe), against ``limits`` (``max_bytes``/``max_pixels``,
    when given, override its two fields). Images are converted to L (channels=1) or RGB
    (channels=3) and resized bilinearly when their size differs from ``image_size``.
    """
    from PIL import Image

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ImageDecodeError(f"image data must be bytes, got {type(data).__name__}")
    if max_bytes is not None or max_pixels is not None:
        limits = ImageLimits(
            max_bytes=limits.max_bytes if max_bytes is None else max_bytes,
            max_pixels=limits.max_pixels if max_pixels is None else max_pixels,
        )
    limits.check_bytes(len(data))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = _open_allowed(Image, bytes(data))
            limits.check_pixels(*img.size)
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
