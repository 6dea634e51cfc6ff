"""Bit-packed binary inference: numba XNOR/popcount kernels, the blocks and the network that run
them."""

from odh_core.packed.block import PackedBlock, PackedUnsupportedError, binary_weight_signs
from odh_core.packed.network import PackedNet, packed_unsupported_reason

__all__ = [
    "PackedBlock",
    "PackedNet",
    "PackedUnsupportedError",
    "binary_weight_signs",
    "packed_unsupported_reason",
]
