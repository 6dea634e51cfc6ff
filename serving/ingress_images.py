"""The image set behind an ingress: ``GET /v1/images/{id}``, the search page's thumbnails and
class names (a mixin of ``serving.ingress.Ingress``; needs ``self.served``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import HTTPException

logger = logging.getLogger(__name__)

__all__ = ["ImageSetSource"]


class ImageSetSource:
    """Lazily opened image stores and class names, per image set."""

    served: Any

    def __init__(self) -> None:
        self._image_sets: dict[str, str | None] = {}
        self._names: dict[str, list[str] | None] = {}
        self._stores: dict[str, Any] = {}
        self._load_lock = asyncio.Lock()

    async def _class_names(self, image_set: str) -> list[str] | None:
        from serving.images import class_names_of

        if image_set not in self._names:
            try:
                self._names[image_set] = await asyncio.to_thread(class_names_of, image_set)
            except (OSError, ValueError) as exc:
                logger.warning("no class names for %s: %r", image_set, exc)
                self._names[image_set] = None
        return self._names[image_set]

    async def _image_set(self) -> str | None:
        """The image set of the served index (explicit ``images``, else its provenance)."""
        from serving.images import image_set_of

        info = self.served.info
        if info.get("images"):
            return str(info["images"])
        index_dir = str(info.get("index") or "")
        if index_dir and index_dir not in self._image_sets:
            try:
                found = await asyncio.to_thread(image_set_of, index_dir)
            except (OSError, ValueError) as exc:
                logger.warning("no image set for %s: %r", index_dir, exc)
                found = None
            self._image_sets[index_dir] = found
        return self._image_sets.get(index_dir)

    async def _store(self) -> Any:
        from serving.images import ImageStore

        image_set = await self._image_set()
        if image_set is None:
            raise HTTPException(
                status_code=404,
                detail="images: this index does not say which image set it was built from "
                "(an index built before image provenance was recorded); start the server "
                "with the 'images' argument to serve thumbnails",
            )
        async with self._load_lock:
            if image_set not in self._stores:
                try:
                    self._stores[image_set] = await asyncio.to_thread(ImageStore, image_set)
                except (OSError, ValueError) as exc:
                    raise HTTPException(
                        status_code=404, detail=f"images: cannot read {image_set}: {exc}"
                    ) from exc
        return self._stores[image_set]
