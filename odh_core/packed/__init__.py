"""Bit-packed binary inference: numba XNOR/popcount kernels and the network that runs them."""

from odh_core.packed.network import (
    PackedBlock,
    PackedNet,
    PackedUnsupportedError,
    binary_weight_signs,
    packed_unsupported_reason,
)

__all__ = [
    "PackedBlock",
    "PackedNet",
    "PackedUnsupportedError",
    "binary_weight_signs",
    "packed_unsupported_reason",
]
