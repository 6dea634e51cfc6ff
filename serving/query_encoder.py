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


class QueryEncoderCore:
    """Encoder of query images (plain class; ``QueryEncoder`` is its Serve deployment).

    Args:
        checkpoint: encoder checkpoint directory/URI.
        device: torch device.
        num_threads: torch (and packed-kernel) threads of this replica.
        inference: ``packed`` (bit-packed XNOR/popcount kernels for binary models on CPU, codes
            identical to the float path) or ``float`` (torch).
    """

    def __init__(
        self,
        checkpoint: str,
        device: str = "cpu",
        num_threads: int = 1,
        inference: str = "packed",
    ) -> None:
        from odh_core.encoder import Encoder

        self.checkpoint = checkpoint
        self.encoder = Encoder.from_checkpoint(
            checkpoint, device=device, num_threads=num_threads, inference=inference
        )
        self.n_bits = int(self.encoder.n_bits)
        logger.info("query encoder loaded %s (%d bits)", checkpoint, self.n_bits)

    def encode_requests(self, requests: list[list[bytes]]) -> list[EncodeResult]:
        """Encode several requests' images in one forward pass; bad images reported per request."""
        from odh_core.images import ImageDecodeError

        arrays: list[np.ndarray] = []
        owners: list[int] = []
        errors: list[list[tuple[int, str]]] = [[] for _ in requests]
        for r, images in enumerate(requests):
            for i, data in enumerate(images):
                try:
                    arrays.append(self.encoder.preprocess(data))
                    owners.append(r)
                except (ImageDecodeError, ValueError) as exc:
                    errors[r].append((i, str(exc) or type(exc).__name__))
                except Exception as exc:  # one bad image must not fail the batch
                    logger.warning("image %d of a request failed to decode: %r", i, exc)
                    errors[r].append((i, f"cannot decode image: {type(exc).__name__}: {exc}"))
        codes = np.zeros((0, self.n_bits // 8), dtype=np.uint8)
        if arrays:
            codes = np.asarray(self.encoder.encode_arrays(np.stack(arrays)), dtype=np.uint8)
        owner_arr = np.asarray(owners, dtype=np.int64)
        results = []
        for r in range(len(requests)):
            if errors[r]:
                results.append(EncodeResult(None, errors[r]))
            else:
                results.append(EncodeResult(codes[owner_arr == r]))
        return results


@serve.deployment(name="QueryEncoder", num_replicas=1, ray_actor_options={"num_cpus": 0.25})
class QueryEncoder(QueryEncoderCore):
    """Serve deployment: ``await handle.encode.remote(list_of_image_bytes) -> EncodeResult``."""

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_S)
    async def encode(self, requests: list[list[bytes]]) -> list[EncodeResult]:
        # Decode + forward off the event loop so the replica keeps answering health checks.
        return await asyncio.to_thread(self.encode_requests, requests)
