import io

import numpy as np
import pytest
from PIL import Image

from odh_core.images import ImageDecodeError, decode_image


def _png(arr: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def test_decode_gray_and_resize() -> None:
    arr = (np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28)
    out = decode_image(_png(arr, "L"), image_size=28, channels=1)
    assert out.shape == (28, 28, 1) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 0], arr)
    rgb = np.zeros((40, 30, 3), np.uint8)
    rgb[..., 0] = 255
    out = decode_image(_png(rgb, "RGB"), image_size=28, channels=1)
    assert out.shape == (28, 28, 1)
    out3 = decode_image(_png(rgb, "RGB"), image_size=32, channels=3)
    assert out3.shape == (32, 32, 3) and int(out3[..., 0].min()) == 255


def test_limits_and_garbage() -> None:
    data = _png(np.zeros((64, 64), np.uint8), "L")
    with pytest.raises(ImageDecodeError, match="bytes"):
        decode_image(data, image_size=28, channels=1, max_bytes=10)
    with pytest.raises(ImageDecodeError, match="pixels"):
        decode_image(data, image_size=28, channels=1, max_pixels=100)
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        decode_image(b"not an image", image_size=28, channels=1)
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(b"", image_size=28, channels=1)
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        decode_image(data[: len(data) // 2], image_size=28, channels=1)
    assert issubclass(ImageDecodeError, ValueError)


def test_image_limits_are_one_policy() -> None:
    from odh_core.images import DEFAULT_IMAGE_LIMITS, ImageLimits

    limits = ImageLimits(max_bytes=100, max_pixels=50)
    limits.check_bytes(100)
    limits.check_pixels(5, 10)
    with pytest.raises(ImageDecodeError, match="101 bytes, over the limit of 100"):
        limits.check_bytes(101)
    with pytest.raises(ImageDecodeError, match="empty"):
        limits.check_bytes(0)
    with pytest.raises(ImageDecodeError, match="60 pixels, over the limit of 50"):
        limits.check_pixels(6, 10)
    with pytest.raises(ValueError, match=r"ImageLimits\.max_bytes must be a positive int"):
        ImageLimits(max_bytes=0)
    data = _png(np.zeros((8, 8), np.uint8), "L")
    assert decode_image(data, image_size=8, channels=1, limits=ImageLimits(max_pixels=64)).shape
    with pytest.raises(ImageDecodeError, match="pixels"):
        decode_image(data, image_size=8, channels=1, limits=ImageLimits(max_pixels=63))
    with pytest.raises(ImageDecodeError, match="over the limit"):
        decode_image(b"\x89PNG" + bytes(DEFAULT_IMAGE_LIMITS.max_bytes), image_size=8, channels=1)
