import numpy as np
import pytest

from odh_core.packing import hamming_distances, pack_bits, unpack_bits


def test_round_trip_and_layout() -> None:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, size=(7, 24)).astype(np.uint8)
    codes = pack_bits(bits.astype(bool))
    assert codes.dtype == np.uint8 and codes.shape == (7, 3)
    np.testing.assert_array_equal(codes, np.packbits(bits, axis=1, bitorder="little"))
    np.testing.assert_array_equal(unpack_bits(codes, 24), bits)


def test_sign_zero_is_one_for_floats() -> None:
    u = np.array([[0.0, -0.0, -1e-9, 3.0, -2.0, 1.0, -1.0, 0.5]], dtype=np.float32)
    assert unpack_bits(pack_bits(u), 8).tolist() == [[1, 1, 0, 1, 0, 1, 0, 1]]
    pm = np.array([[1, -1, 1, -1, 1, -1, 1, -1]], dtype=np.int8)
    assert unpack_bits(pack_bits(pm), 8).tolist() == [[1, 0, 1, 0, 1, 0, 1, 0]]


@pytest.mark.parametrize("n_bits", [8, 16, 64, 128])
def test_hamming_matches_naive(n_bits: int) -> None:
    rng = np.random.default_rng(n_bits)
    a = rng.integers(0, 2, size=(9, n_bits)).astype(bool)
    b = rng.integers(0, 2, size=(13, n_bits)).astype(bool)
    naive = (a[:, None, :] != b[None, :, :]).sum(axis=2)
    d = hamming_distances(pack_bits(a), pack_bits(b))
    assert d.dtype == np.int32
    np.testing.assert_array_equal(d, naive)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        pack_bits(np.zeros((2, 12)))
    with pytest.raises(TypeError):
        hamming_distances(np.zeros((1, 2), dtype=np.int32), np.zeros((1, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="widths differ"):
        hamming_distances(np.zeros((1, 2), np.uint8), np.zeros((1, 3), np.uint8))
    with pytest.raises(ValueError, match="n_bits"):
        unpack_bits(np.zeros((1, 2), np.uint8), 24)
