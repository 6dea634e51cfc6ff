"""Inference-time encoder: image bytes → normalised tensor → packed binary codes.

On CPU a binary model runs by default through the bit-packed XNOR/popcount path
(:mod:`odh_core.packed`), whose outputs are bit-identical to the float model's in eval mode; the
float (torch) path stays for GPUs, full-precision twins, ``inference="float"`` and as the oracle.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import numpy as np
import torch

from odh_core.checkpoint import EncoderConfig, load_checkpoint
from odh_core.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image
from odh_core.packing import pack_bits

logger = logging.getLogger(__name__)

INFERENCE_MODES: tuple[str, ...] = ("packed", "float")


class Encoder:
    """A loaded encoder in eval mode; identical images always give identical codes.

    ``inference="packed"`` (default) runs a binary model on CPU through the bit-packed kernels
    (compiled, or loaded from numba's cache, here in ``__init__``); a full-precision model, a GPU
    device or a model the packed path cannot run falls back to the float path (logged).
    ``inference_path`` says which one runs.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: EncoderConfig,
        *,
        device: str = "cpu",
        num_threads: int | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        batch_size: int = 256,
        inference: str = "packed",
    ) -> None:
        if inference not in INFERENCE_MODES:
            raise ValueError(f"inference must be one of {list(INFERENCE_MODES)}, got {inference!r}")
        if num_threads is not None:
            if num_threads < 1:
                raise ValueError(f"num_threads must be >= 1, got {num_threads}")
            torch.set_num_threads(num_threads)
        self.num_threads = num_threads
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config = config
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.batch_size = batch_size
        self._mean = np.asarray(config.mean, dtype=np.float32).reshape(-1, 1, 1)
        self._std = np.asarray(config.std, dtype=np.float32).reshape(-1, 1, 1)
        self._packed: Any = None
        self._lock = threading.Lock()
        self.inference_path = "float"
        if inference == "packed":
            self._init_packed()

    def _init_packed(self) -> None:
        from odh_core.packed import PackedNet, packed_unsupported_reason

        if self.device.type != "cpu":
            logger.info("encoder: float path on %s (the packed path is CPU-only)", self.device)
            return
        reason = packed_unsupported_reason(self.model)
        if reason is not None:
            logger.info("encoder: float path (%s)", reason)
            return
        self.inference_path = "packed"
        with self._lock:  # compile (or load the cached kernels) and verify now, not per batch
            self._set_kernel_threads()
            self._packed = PackedNet.from_model(self.model, verify_size=self.config.image_size)
        logger.info("encoder: packed binary inference (%d blocks)", len(self._packed.blocks))

    def _set_kernel_threads(self) -> None:
        import numba

        limit = int(numba.config.NUMBA_NUM_THREADS)
        wanted = self.num_threads or torch.get_num_threads()
        numba.set_num_threads(max(1, min(wanted, limit)))

    @classmethod
    def from_checkpoint(
        cls, path: str, device: str = "cpu", num_threads: int | None = None, **kwargs: Any
    ) -> Encoder:
        """Load a checkpoint (``model.safetensors``) or a packed export (``packed.safetensors``)."""
        from odh_core.export import PACKED_FILE, load_packed

        if os.path.isfile(os.path.join(str(path), PACKED_FILE)) and not os.path.isfile(
            os.path.join(str(path), "model.safetensors")
        ):
            model, config = load_packed(str(path), device=device)
        else:
            model, config = load_checkpoint(path, device=device)
        return cls(model, config, device=device, num_threads=num_threads, **kwargs)

    @property
    def n_bits(self) -> int:
        return self.config.n_bits

    def normalise(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``[n, H, W, C]`` → normalised float32 ``[n, C, H, W]``."""
        arr = np.asarray(images)
        if arr.ndim != 4 or arr.shape[-1] != self.config.channels:
            raise ValueError(
                f"images must be uint8[n, H, W, {self.config.channels}], got {arr.shape}"
            )
        x = arr.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        return (x - self._mean) / self._std

    def decode(self, data: bytes) -> np.ndarray:
        """Decode one encoded image to ``uint8[H, W, C]`` at the encoder's size (no normalising:
        :meth:`normalise` a stack of them at once)."""
        return decode_image(
            data,
            image_size=self.config.image_size,
            channels=self.config.channels,
            max_bytes=self.max_bytes,
            max_pixels=self.max_pixels,
        )

    def preprocess(self, data: bytes) -> np.ndarray:
        """Decode and normalise one encoded image to ``float32[C, H, W]``."""
        return self.normalise(self.decode(data)[None])[0]

    def encode_arrays(self, arrays: np.ndarray) -> np.ndarray:
        """Normalised ``float32[n, C, H, W]`` → packed codes ``uint8[n, n_bits/8]``."""
        x = np.asarray(arrays, dtype=np.float32)
        size, ch = self.config.image_size, self.config.channels
        if x.ndim != 4 or x.shape[1:] != (ch, size, size):
            raise ValueError(f"arrays must be float32[n, {ch}, {size}, {size}], got {x.shape}")
        out = np.empty((x.shape[0], self.n_bits // 8), dtype=np.uint8)
        if self._packed is not None:
            with self._lock:  # numba's parallel kernels must not be entered from two threads
                self._set_kernel_threads()  # numba's thread count is per calling thread
                for start in range(0, x.shape[0], self.batch_size):
                    u = self._packed(np.ascontiguousarray(x[start : start + self.batch_size]))
                    out[start : start + len(u)] = pack_bits(u >= 0)
            return out
        with torch.inference_mode():
            for start in range(0, x.shape[0], self.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(x[start : start + self.batch_size]))
                u = self.model(batch.to(self.device)).float().cpu().numpy()
                out[start : start + len(batch)] = pack_bits(u >= 0)
        return out

    def encode_images(self, images: list[bytes]) -> np.ndarray:
        """Encoded image bytes → packed codes; raises ImageDecodeError naming the bad index."""
        if len(images) == 0:
            return np.empty((0, self.n_bits // 8), dtype=np.uint8)
        arrays = []
        for i, data in enumerate(images):
            try:
                arrays.append(self.preprocess(data))
            except ImageDecodeError as exc:
                raise ImageDecodeError(f"image {i}: {exc}") from exc
        return self.encode_arrays(np.stack(arrays))
