"""The generation an ingress serves, and switching it: ``POST /v1/admin/reload``.

``ServedIndex`` is replaced as a whole (an atomic switch): a request reads it once and uses that
generation to the end, even across a reload. ``reload_index`` loads the new manifest in every
searcher replica first (``prepare``) and only then returns the new ``ServedIndex``; anything that
fails leaves the old one in place.

A served index is named by its directory, generation and manifest digest (sha256 of the
manifest's bytes); every searcher call carries all three, so a replica never answers from another
manifest under the same number. Reload targets are confined to the configured roots
(``ServeConfig.reload_roots``, default: the served index's parent directory); a URL or path
outside them is refused before anything reads it. After a reload the choice is persisted in
``serving-state.json`` in the deploy-time index directory, and an ingress restarted within the
same deployment starts from it — from the current manifest of the index it names, the one truth —
not from the deploy-time generation (a new deployment starts from its own arguments).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Any

from serving.errors import SearchFailure
from serving.fanout import FanOut
from serving.layout import GroupSpec, group_specs, plan_groups
from serving.schemas import ReloadGroup, ReloadResponse

logger = logging.getLogger(__name__)

STATE_FILE = "serving-state.json"


@dataclass(frozen=True)
class ServedIndex:
    """The generation served now; replaced as a whole on reload (an atomic switch).

    ``digest``: sha256 of its manifest's bytes (``None`` when not known, e.g. in tests with fake
    groups); ``encoder_sha256``: the checkpoint its codes were encoded with."""

    info: dict[str, Any]
    specs: tuple[GroupSpec, ...] | None
    n_bits: int
    generation: int
    digest: str | None = None
    encoder_sha256: str | None = None

    def spec(self, g: int) -> GroupSpec | None:
        """The ``GroupSpec`` every call to group ``g`` names (``None``: the replica's own)."""
        return self.specs[g] if self.specs else None


def served_from_info(info: dict[str, Any], n_groups: int) -> ServedIndex:
    """The first ``ServedIndex`` from the facts ``build_app`` passes (see ``QueryRouter``), moved
    to what ``serving-state.json`` and the current manifest say when they differ (an ingress
    restart serves what was last reloaded, never the deploy-time generation)."""
    specs = None
    layout = info.get("group_shards")
    if info.get("index") and layout and len(layout) == n_groups:
        specs = tuple(
            GroupSpec(
                str(info["index"]),
                tuple(int(s) for s in shards),
                int(info["generation"]),
                info.get("digest"),
            )
            for shards in layout
        )
    served = ServedIndex(
        dict(info),
        specs,
        int(info["n_bits"]),
        int(info["generation"]),
        info.get("digest"),
        info.get("encoder_sha256"),
    )
    if specs is not None and info.get("digest"):
        try:
            return _converge(served, n_groups)
        except Exception as exc:  # never fail the replica: serve what build_app saw
            logger.warning("could not converge on the persisted serving state: %r", exc)
    return served


def _converge(served: ServedIndex, n_groups: int) -> ServedIndex:
    """``served`` moved to the persisted reload target's current manifest (if it changed)."""
    from indexer.manifest import load_manifest

    info = served.info
    home = str(info.get("home") or info["index"])
    index_dir = str(info["index"])
    state = read_serving_state(home)
    if state and state.get("deploy_id") != info.get("deploy_id"):
        state = None  # written under an earlier deployment: a redeploy starts from its args
    if state and state.get("index"):
        try:
            index_dir = check_reload_target(str(state["index"]), reload_roots(info))
        except ValueError as exc:
            logger.warning("ignoring %s: %s", STATE_FILE, exc)
    manifest, digest = load_manifest(index_dir)
    if digest == served.digest and index_dir == str(info["index"]):
        return served
    if int(manifest.n_bits) != served.n_bits:
        raise ValueError(f"{index_dir} has {manifest.n_bits}-bit codes, not {served.n_bits}")
    layout = plan_groups(manifest, n_groups, str(info.get("placement", "split")))
    if len(layout) != n_groups:
        raise ValueError(f"{index_dir} lays out {len(layout)} groups, not {n_groups}")
    new_info = _info_of(info, index_dir, manifest, digest, layout)
    logger.info(
        "serving %s generation %d (the current manifest; deployed with generation %d)",
        index_dir,
        manifest.generation,
        served.generation,
    )
    return ServedIndex(
        new_info,
        tuple(group_specs(index_dir, manifest, layout, digest)),
        served.n_bits,
        int(manifest.generation),
        digest,
        manifest.encoder_sha256 or served.encoder_sha256,
    )


def _info_of(
    info: dict[str, Any], index_dir: str, manifest: Any, digest: str, layout: list[list[int]]
) -> dict[str, Any]:
    return dict(info) | {
        "index": str(index_dir),
        "generation": int(manifest.generation),
        "digest": digest,
        "nlist": int(manifest.nlist),
        "default_nprobe": manifest.search_defaults.get("nprobe"),
        "ntotal": int(sum(int(e.ntotal) for e in manifest.shards)),
        "shards": len(manifest.shards),
        "group_shards": layout,
    }


def reload_roots(info: dict[str, Any]) -> list[str]:
    """Where reload may switch to: ``info["reload_roots"]`` (comma-separated) or the parent
    directory of the deploy-time index."""
    from indexer import storage

    raw = info.get("reload_roots")
    if raw:
        roots = [r.strip() for r in str(raw).split(",") if r.strip()]
    else:
        home = str(info.get("home") or info.get("index") or "")
        roots = [home.rstrip("/").rsplit("/", 1)[0]] if "/" in home.rstrip("/") else []
    return [storage.normalize(r).rstrip("/") or "/" for r in roots]


def check_reload_target(index: str, roots: list[str]) -> str:
    """``index`` normalised, if it lies under one of ``roots``; else ValueError naming them.

    Local paths are resolved (``..`` and symlinks) before the check; URLs must not contain
    ``..`` and must start with a root URL (same scheme and bucket), so ``http://…`` or another
    bucket is refused without being fetched."""
    from indexer import storage

    if not isinstance(index, str) or not index.strip():
        raise ValueError("index: must be a non-empty path")
    if "://" in index:
        if ".." in index.split("://", 1)[1].split("/"):
            raise ValueError(f"index: {index!r} contains '..'")
        target = index.rstrip("/")
        for root in roots:
            if "://" in root and (target == root or target.startswith(root + "/")):
                return target
    else:
        target = os.path.realpath(storage.normalize(index))
        for root in roots:
            if "://" in root:
                continue
            real_root = os.path.realpath(root)
            if os.path.commonpath([target, real_root]) == real_root:
                return target
    raise ValueError(
        f"index: {index!r} is outside the allowed reload roots {roots} "
        "(set ServeConfig.reload_roots to allow more)"
    )


def read_serving_state(home: str) -> dict[str, Any] | None:
    """``home/serving-state.json`` (what the last reload switched to), or None."""
    from indexer import storage

    try:
        state = storage.read_json(storage.join(home, STATE_FILE))
    except (FileNotFoundError, ValueError, OSError):
        return None
    return state if isinstance(state, dict) else None


def write_serving_state(home: str, served: ServedIndex) -> None:
    """Persist the reload target next to the deploy-time index (best effort: a read-only index
    directory only loses the persistence, with a warning)."""
    from indexer import storage

    state = {
        "format_version": 1,
        "deploy_id": served.info.get("deploy_id"),
        "index": served.info.get("index"),
        "generation": served.generation,
        "digest": served.digest,
    }
    try:
        storage.write_json_atomic(storage.join(home, STATE_FILE), state)
    except OSError as exc:
        logger.warning("reload: could not persist %s in %s: %r", STATE_FILE, home, exc)


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


def _short(exc: BaseException) -> str:
    """The last line of an error (a remote traceback names PIDs, hosts and paths: keep it out of
    API answers), at most 300 characters."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]


async def _swap_encoder(encoder: Any, checkpoint: str, sha256: str, timeout_s: float) -> None:
    """Load ``checkpoint`` in the query encoder (verified against ``sha256``) before switching."""
    for _ in range(4):  # Serve routes each call to some replica; the default is one replica
        done = await asyncio.wait_for(encoder.swap.remote(checkpoint, sha256), timeout=timeout_s)
        if done.get("sha256") != sha256:
            raise RuntimeError(f"encoder answered checkpoint {done.get('sha256')}, not {sha256}")


async def reload_index(
    fanout: FanOut,
    old: ServedIndex,
    index: str | None,
    *,
    replicas: int,
    placement: str,
    timeout_s: float = 300.0,
    encoder: Any = None,
    persist: bool = True,
) -> tuple[ServedIndex, ReloadResponse]:
    """Load the manifest at ``index`` (default: the served directory, read again) in every
    searcher replica (and a new encoder when the manifest names another one); returns the new
    ``ServedIndex`` (to switch to) and the API answer. Raises ``SearchFailure`` if anything
    fails: the caller keeps serving ``old``."""
    from indexer.manifest import load_manifest

    index_dir = index or old.info.get("index")
    if not index_dir:
        raise SearchFailure(400, "index: no index directory to reload", "bad_request")
    if index:
        try:
            index_dir = check_reload_target(index, reload_roots(old.info))
        except ValueError as exc:
            raise SearchFailure(400, str(exc), "bad_request") from None
    try:
        manifest, digest = await asyncio.to_thread(load_manifest, index_dir)
    except (OSError, ValueError) as exc:
        raise SearchFailure(
            400, f"index: cannot read the manifest of {index_dir}: {_short(exc)}", "bad_request"
        ) from None
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
    specs = group_specs(str(index_dir), manifest, layout, digest)
    encoder_sha = manifest.encoder_sha256 or old.encoder_sha256
    swap = (
        encoder is not None
        and manifest.encoder_sha256 is not None
        and manifest.encoder_sha256 != old.encoder_sha256
        and manifest.encoder_checkpoint is not None
    )
    try:
        prepared = await asyncio.gather(
            *(_prepare_group(fanout, g, s, replicas, timeout_s) for g, s in enumerate(specs))
        )
        if swap:
            await _swap_encoder(
                encoder, str(manifest.encoder_checkpoint), str(encoder_sha), timeout_s
            )
    except Exception as exc:
        logger.error("reload of %s failed: %r", index_dir, exc)
        raise SearchFailure(
            500,
            f"reload of {index_dir} failed (still serving generation {old.generation}): "
            f"{_short(exc)}",
            "internal",
        ) from None
    info = _info_of(old.info, str(index_dir), manifest, digest, layout)
    if swap:
        info["encoder"] = str(manifest.encoder_checkpoint)
    new = ServedIndex(info, tuple(specs), old.n_bits, int(manifest.generation), digest, encoder_sha)
    home = old.info.get("home") or old.info.get("index")
    if home and persist:
        await asyncio.to_thread(write_serving_state, str(home), new)
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
