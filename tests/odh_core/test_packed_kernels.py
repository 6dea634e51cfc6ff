"""The popcount kernel of one binary 3×3 conv against a brute-force float conv of ±1 tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from odh_core.packed import kernels as K

_E1 = np.zeros(0, dtype=np.float32)
_E2 = np.zeros((0, 0), dtype=np.float32)
_E4 = np.zeros((0, 0, 0, 0), dtype=np.float32)


def _run(x: np.ndarray, beta: np.ndarray, signs: np.ndarray, stride: int) -> np.ndarray:
    n, h, w, _ = x.shape
    oc = signs.shape[0]
    out = np.full((n, (h - 1) // stride + 1, (w - 1) // stride + 1, oc), np.nan, np.float32)
    ones, zeros = np.ones(oc, np.float32), np.zeros(oc, np.float32)
    K.binary_block(
        x, beta, K.pack_weight_signs(signs), K.border_corrections(signs), ones, ones, zeros,
        stride, K.SHORTCUT_NONE, _E4, _E2, _E1, _E1, K.POST_IDENTITY, _E1, _E1, _E1, out,
    )  # fmt: skip
    return out


def _brute(x: np.ndarray, beta: np.ndarray, signs: np.ndarray, stride: int) -> np.ndarray:
    shifted = x - beta if beta.size else x
    xs = torch.from_numpy(np.where(shifted >= 0, 1.0, -1.0)).permute(0, 3, 1, 2)
    ws = torch.from_numpy(np.where(signs, 1.0, -1.0))
    return F.conv2d(xs, ws, stride=stride, padding=1).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize(
    ("n", "h", "w", "c", "oc", "stride"),
    [
        (2, 7, 5, 40, 24, 1),  # odd sizes, channels not a multiple of 32/64
        (3, 9, 8, 32, 64, 2),
        (1, 1, 1, 3, 5, 1),  # every tap of the single pixel is padding but the centre
        (1, 1, 1, 3, 5, 2),
        (2, 2, 3, 64, 8, 2),
        (2, 6, 7, 130, 17, 2),  # five lanes, an odd number of uint32 per patch
        (1, 4, 4, 1, 3, 1),
        (2, 5, 3, 96, 33, 1),
    ],
)
def test_kernel_equals_brute_force_pm1_conv(
    n: int, h: int, w: int, c: int, oc: int, stride: int
) -> None:
    rng = np.random.default_rng(n * 1000 + h * 100 + w * 10 + c + oc + stride)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = 0.0  # sign(0) = +1
    signs = rng.random((oc, c, 3, 3)) < 0.5
    np.testing.assert_array_equal(_run(x, _E1, signs, stride), _brute(x, _E1, signs, stride))


def test_kernel_with_shift_and_every_border_class() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 5, 6, 70)).astype(np.float32)
    beta = rng.standard_normal(70).astype(np.float32) * 0.3
    x[0, 0, 0, :] = beta  # x − β = 0 exactly: +1
    signs = rng.random((12, 70, 3, 3)) < 0.3
    for stride in (1, 2):
        got = _run(x, beta, signs, stride)
        np.testing.assert_array_equal(got, _brute(x, beta, signs, stride))
    # all 9 (top/middle/bottom × left/middle/right) positions occur in a 5×6 stride-1 output
    assert got.shape[1:3] == (3, 3)


def test_border_corrections_count_padded_weight_bits() -> None:
    signs = np.zeros((2, 4, 3, 3), dtype=bool)
    signs[0, :, 0, :] = True  # top row: 4 channels × 3 taps
    signs[1, 1, 1, 2] = True  # right column, middle row
    corr = K.border_corrections(signs)
    assert corr.dtype == np.int16 and corr.shape == (16, 2)
    assert corr[0].tolist() == [0, 0]
    assert corr[1].tolist() == [12, 0]  # top padded
    assert corr[8].tolist() == [4, 1]  # right padded: top-right tap of channel set 0
    assert corr[1 | 8].tolist() == [12, 1]  # the corner tap is counted once


def test_pack_weight_layout() -> None:
    signs = np.zeros((1, 40, 3, 3), dtype=bool)
    signs[0, 33, 0, 1] = True  # tap 1, lane 1 (c // 32), bit 1
    words = K.pack_weight_signs(signs)
    assert words.shape == (K.patch_words(40), 1) == (9, 1)
    as32 = words[:, 0].copy().view("<u4")
    assert np.flatnonzero(as32).tolist() == [1 * 2 + 1] and as32[3] == 1 << 1
    with pytest.raises(ValueError, match="3×3"):
        K.pack_weight_signs(np.zeros((1, 1, 1, 1), dtype=bool))
