"""The generation an ingress serves, and switching it: ``POST /v1/admin/reload``.

``ServedIndex`` is replaced as a whole (an atomic switch): a request reads it once and uses that
generation to the end, even across a reload. ``reload_index`` loads the new manifest in every
searcher replica first (``prepare``) and only then returns the new ``ServedIndex``; anything that
fails leaves the old one in place.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from serving.errors import SearchFailure
from serving.fanout import FanOut
from serving.layout import GroupSpec, group_specs, plan_groups
from serving.schemas import ReloadGroup, ReloadResponse

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedIndex:
    """The generation served now; replaced as a whole on reload (an atomic switch)."""

    info: dict[str, Any]
    specs: tuple[GroupSpec, ...] | None
    n_bits: int
    generation: int

    def spec(self, g: int) -> GroupSpec | None:
        """The ``GroupSpec`` every call to group ``g`` names (``None``: the replica's own)."""
        return self.specs[g] if self.specs else None


def served_from_info(info: dict[str, Any], n_groups: int) -> ServedIndex:
    """The first ``ServedIndex`` from the facts ``build_app`` passes (see ``QueryRouter``)."""
    specs = None
    layout = info.get("group_shards")
    if info.get("index") and layout and len(layout) == n_groups:
        specs = tuple(
            GroupSpec(str(info["index"]), tuple(int(s) for s in shards), int(info["generation"]))
            for shards in layout
        )
    return ServedIndex(dict(info), specs, int(info["n_bits"]), int(info["generation"]))


async def _prepare_group(
    fanout: FanOut, g: int, spec: GroupSpec, replicas: int, timeout_s: float
) -> list[str]:
    """Call ``prepare`` until every replica of group ``g`` has loaded ``spec`` (bounded: Serve
    routes each call to some replica, so a few calls per replica reach them all)."""
    seen: set[str] = set()
    for _ in range(max(4, 6 * replicas)):
        batch = [fanout.groups[g].prepare.remote(spec) for _ in range(replicas)]
        done = await asyncio.wait_for(asyncio.gather(*batch), timeout=timeout_s)
        seen |= {str(d["replica"]) for d in done}
        if len(seen) >= replicas:
            break
    if len(seen) < replicas:
        logger.warning(
            "reload: group %d: %d of %d replicas prepared; the rest load on demand",
            g,
            len(seen),
            replicas,
        )
    return sorted(seen)


async def reload_index(
    fanout: FanOut,
    old: ServedIndex,
    index: str | None,
    *,
    replicas: int,
    placement: str,
    timeout_s: float = 300.0,
) -> tuple[ServedIndex, ReloadResponse]:
    """Load the manifest at ``index`` (default: the served directory, read again) in every
    searcher replica; returns the new ``ServedIndex`` (to switch to) and the API answer. Raises
    ``SearchFailure`` if anything fails: the caller keeps serving ``old``."""
    from indexer.manifest import read_manifest

    index_dir = index or old.info.get("index")
    if not index_dir:
        raise SearchFailure(400, "index: no index directory to reload", "bad_request")
    try:
        manifest = await asyncio.to_thread(read_manifest, index_dir)
    except (OSError, ValueError) as exc:
        raise SearchFailure(400, f"index: cannot read {index_dir}: {exc}", "bad_request") from exc
    if int(manifest.n_bits) != old.n_bits:
        raise SearchFailure(
            409,
            f"index: {index_dir} has {manifest.n_bits}-bit codes; this app serves "
            f"{old.n_bits}-bit codes (redeploy instead)",
            "bad_request",
        )
    layout = plan_groups(manifest, len(fanout), placement)
    if len(layout) != len(fanout):
        raise SearchFailure(
            409,
            f"index: {index_dir} lays out {len(layout)} searcher groups; this app has "
            f"{len(fanout)} (redeploy instead)",
            "bad_request",
        )
    specs = group_specs(str(index_dir), manifest, layout)
    try:
        prepared = await asyncio.gather(
            *(_prepare_group(fanout, g, s, replicas, timeout_s) for g, s in enumerate(specs))
        )
    except Exception as exc:
        logger.error("reload of %s failed: %r", index_dir, exc)
        raise SearchFailure(
            500,
            f"reload of {index_dir} failed (still serving generation {old.generation}): {exc}",
            "internal",
        ) from exc
    info = dict(old.info) | {
        "index": str(index_dir),
        "generation": int(manifest.generation),
        "nlist": int(manifest.nlist),
        "ntotal": int(sum(int(e.ntotal) for e in manifest.shards)),
        "shards": len(manifest.shards),
        "group_shards": layout,
    }
    new = ServedIndex(info, tuple(specs), old.n_bits, int(manifest.generation))
    logger.info("reloaded %s: generation %d → %d", index_dir, old.generation, manifest.generation)
    answer = ReloadResponse(
        index=str(index_dir),
        generation=new.generation,
        previous_generation=old.generation,
        groups=[
            ReloadGroup(group=g, shards=list(layout[g]), replicas_prepared=len(prepared[g]))
            for g in range(len(fanout))
        ],
    )
    return new, answer
