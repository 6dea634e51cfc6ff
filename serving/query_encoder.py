"""Query encoder deployment: image bytes → packed codes, batched across concurrent requests.

One call carries all images of one search request. ``@serve.batch`` gathers the calls that arrive
within a few milliseconds, every image is decoded on its own (a bad image becomes an error entry
for its request, naming its index; it never fails the batch or the replica), and the good ones go
through the encoder in one forward pass.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ray import serve

logger = logging.getLogger(__name__)

MAX_BATCH_SIZE: int = 32
BATCH_WAIT_S: float = 0.005


@dataclass
class EncodeResult:
    """Codes of one request's images, or the per-image errors (``[(index, message)]``)."""

    codes: np.ndarray | None
    errors: list[tuple[int, str]] = field(default_factory=list)
    encoder_sha256: str | None = None


class QueryEncoderCore:
    """Encoder of query images (plain class; ``QueryEncoder`` is its Serve deployment).

    Args:
        checkpoint: encoder checkpoint directory/URI.
        device: torch device.
        num_threads: torch (and packed-kernel) threads of this replica.
        expected_sha256: the checkpoint sha256 the index manifest names (its codes were encoded
            with it); a checkpoint with another sha256 is refused (``ValueError``).
        inference: ``packed`` (bit-packed XNOR/popcount kernels for binary models on CPU, codes
            identical to the float path) or ``float`` (torch).
    """

    def __init__(
        self,
        checkpoint: str,
        device: str = "cpu",
        num_threads: int = 1,
        expected_sha256: str | None = None,
        inference: str = "packed",
    ) -> None:
        self.device = device
        self.num_threads = int(num_threads)
        self.inference = inference
        self._active = self._open(checkpoint, expected_sha256)  # (checkpoint, encoder, sha256)
        self.n_bits = int(self.encoder.n_bits)
        logger.info("query encoder loaded %s (%d bits)", checkpoint, self.n_bits)

    @property
    def checkpoint(self) -> str:
        return str(self._active[0])

    @property
    def encoder(self) -> Any:
        return self._active[1]

    @property
    def sha256(self) -> str:
        return str(self._active[2])

    def _open(self, checkpoint: str, expected_sha256: str | None) -> tuple[str, Any, str]:
        from odh_core.checkpoint import checkpoint_sha256
        from odh_core.encoder import Encoder

        sha = checkpoint_sha256(checkpoint)
        if expected_sha256 is not None and sha != expected_sha256:
            raise ValueError(
                f"checkpoint {checkpoint} has sha256 {sha}, but the index was encoded with "
                f"{expected_sha256}: its query codes would not match the index"
            )
        encoder = Encoder.from_checkpoint(
            checkpoint, device=self.device, num_threads=self.num_threads, inference=self.inference
        )
        return checkpoint, encoder, sha

    def swap(self, checkpoint: str, expected_sha256: str) -> dict[str, Any]:
        """Load ``checkpoint`` (verified against ``expected_sha256``, same ``n_bits``) and use it
        for every later batch; returns its sha256. A failure keeps the current encoder."""
        if expected_sha256 == self.sha256:
            return {"sha256": self.sha256, "checkpoint": self.checkpoint}
        path, encoder, sha = self._open(checkpoint, expected_sha256)
        if int(encoder.n_bits) != self.n_bits:
            raise ValueError(
                f"checkpoint {checkpoint} makes {encoder.n_bits}-bit codes, not {self.n_bits}"
            )
        self._active = (path, encoder, sha)  # one atomic switch
        logger.info("query encoder switched to %s (%s)", path, sha[:12])
        return {"sha256": sha, "checkpoint": path}

    def encode_requests(self, requests: list[list[bytes]]) -> list[EncodeResult]:
        """Encode several requests' images in one forward pass; bad images reported per request."""
        from odh_core.images import ImageDecodeError

        _, encoder, sha = self._active  # one encoder for the whole batch, even across a swap
        arrays: list[np.ndarray] = []
        owners: list[int] = []
        errors: list[list[tuple[int, str]]] = [[] for _ in requests]
        for r, images in enumerate(requests):
            for i, data in enumerate(images):
                try:
                    arrays.append(encoder.preprocess(data))
                    owners.append(r)
                except (ImageDecodeError, ValueError) as exc:
                    errors[r].append((i, str(exc) or type(exc).__name__))
                except Exception as exc:  # one bad image must not fail the batch
                    logger.warning("image %d of a request failed to decode: %r", i, exc)
                    errors[r].append((i, f"cannot decode image: {type(exc).__name__}: {exc}"))
        codes = np.zeros((0, self.n_bits // 8), dtype=np.uint8)
        if arrays:
            codes = np.asarray(encoder.encode_arrays(np.stack(arrays)), dtype=np.uint8)
        owner_arr = np.asarray(owners, dtype=np.int64)
        results = []
        for r in range(len(requests)):
            if errors[r]:
                results.append(EncodeResult(None, errors[r], sha))
            else:
                results.append(EncodeResult(codes[owner_arr == r], [], sha))
        return results


@serve.deployment(name="QueryEncoder", num_replicas=1, ray_actor_options={"num_cpus": 0.25})
class QueryEncoder(QueryEncoderCore):
    """Serve deployment: ``await handle.encode.remote(list_of_image_bytes) -> EncodeResult``."""

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_S)
    async def encode(self, requests: list[list[bytes]]) -> list[EncodeResult]:
        # Decode + forward off the event loop so the replica keeps answering health checks.
        return await asyncio.to_thread(self.encode_requests, requests)
