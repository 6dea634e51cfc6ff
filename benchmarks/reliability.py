"""Reliability benchmark: overload, shedding and recovery of the Serve app, and a replica kill.

``odh bench reliability [--n 20000] [--clients 48] [--requests 240] ...``

Bounded and loopback only (an embedded Ray cluster, the app on 127.0.0.1):

1. Synthetic clustered codes (``--n``, ``--bits``) → ``indexer.build.build``; the app with
   ``--groups`` searcher groups × ``--replicas`` replicas and the admission limits under test
   (``--max-ongoing`` / ``--max-queued`` per deployment).
2. **Baseline**: ``--singles`` sequential single-code queries.
3. **Overload**: ``--clients`` threads send ``--requests`` heavy requests (``--batch`` codes,
   k ``--k``) at once. Counted: sent, answered 200, partial, shed (503/429, with or without
   ``Retry-After``), other failures; p50/p99 latency of all, of the answered and of the shed.
4. **Recovery**: seconds until a normal single query is answered after the overload.
5. **Replica kill**: single queries run in a loop while one searcher replica's process is killed
   (SIGKILL, by its pid); counted: failed and partial answers during the kill window; time until
   the first full (non-partial) answer after the kill and until Serve reports every replica
   running again.
6. **Generations**: every generation any answer carried (one index here: expect exactly one).

Writes ``reliability.json`` and ``reliability.md`` under ``--output``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._machine import command_line, machine_info
from odh_core.options import option

logger = logging.getLogger(__name__)

APP = "odh-reliability"


@dataclass(frozen=True)
class Config:
    """Overload, load shedding, recovery and a replica kill, against the Serve application."""

    n: int = option(20_000, help="indexed codes")
    bits: int = option(64, help="code length")
    shards: int = option(2, help="index shards")
    nlist: int = option(64, help="IVF lists")
    groups: int = option(2, help="searcher groups")
    replicas: int = option(2, help="replicas per searcher group")
    max_ongoing: int = option(4, help="max_ongoing_requests of the ingress")
    max_queued: int = option(8, help="max_queued_requests of every deployment")
    singles: int = option(100, help="sequential single queries of the baseline")
    clients: int = option(48, help="concurrent clients of the overload phase")
    requests: int = option(240, help="requests of the overload phase")
    batch: int = option(64, help="codes per overload request")
    k: int = option(100, help="k of the overload requests")
    kill_window_s: float = option(20.0, help="seconds of queries around the replica kill")
    seed: int = option(0, help="seed of the synthetic codes")
    port: int = option(8766, help="HTTP port of the served application (127.0.0.1)")
    workdir: str | None = option(None, help="scratch directory (default: a temporary directory)")
    output: str = option(str(Path(__file__).parent / "results"), help="results directory")

    def __post_init__(self) -> None:
        for name in ("n", "shards", "groups", "replicas", "clients", "requests", "batch", "k"):
            if getattr(self, name) < 1:
                raise ValueError(f"Config.{name} must be >= 1, got {getattr(self, name)}")
        if self.kill_window_s <= 0:
            raise ValueError(f"Config.kill_window_s must be > 0, got {self.kill_window_s}")


def _ms(samples: list[float]) -> dict[str, float | None]:
    if not samples:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    arr = np.asarray(samples) * 1e3
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p99_ms": round(float(np.percentile(arr, 99)), 2),
        "max_ms": round(float(arr.max()), 2),
    }


@dataclass
class _Answer:
    status: int
    seconds: float
    partial: bool = False
    generation: int | None = None
    retry_after: str | None = None
    error: str | None = None


def _post(client: Any, body: dict[str, Any]) -> _Answer:
    import httpx

    t0 = time.perf_counter()
    try:
        r = client.post("/v1/search", json=body)
    except httpx.HTTPError as exc:
        return _Answer(0, time.perf_counter() - t0, error=type(exc).__name__)
    seconds = time.perf_counter() - t0
    if r.status_code != 200:
        return _Answer(r.status_code, seconds, retry_after=r.headers.get("retry-after"))
    doc = r.json()
    return _Answer(200, seconds, bool(doc.get("partial")), int(doc["generation"]))


def _searcher_replica_pid(app: str, deployment: str) -> int | None:
    """The pid of one live replica actor of ``deployment`` (from the GCS actor table)."""
    from ray._private import state

    for info in state.actors().values():
        name = str(info.get("ActorClassName", ""))
        if info.get("State") == "ALIVE" and name.endswith(f"ServeReplica:{app}:{deployment}"):
            pid = info.get("Pid")
            if pid:
                return int(pid)
    return None


def _replicas_running(app: str, deployment: str) -> int:
    from ray import serve

    status = serve.status().applications[app].deployments[deployment]
    return int(status.replica_states.get("RUNNING", 0))


def _overload(url: str, body: dict[str, Any], clients: int, requests: int) -> list[_Answer]:
    import httpx

    local = threading.local()

    def one(_: int) -> _Answer:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=120)
        return _post(local.client, body)

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, range(requests)))


def _kill_phase(url: str, body: dict[str, Any], window_s: float, replicas: int) -> dict[str, Any]:
    """Single queries in a loop; one Searcher0 replica is SIGKILLed a quarter into the window."""
    import httpx

    answers: list[tuple[float, _Answer]] = []
    pid = _searcher_replica_pid(APP, "Searcher0")
    killed_at: float | None = None
    restored_at: float | None = None
    start = time.perf_counter()
    with httpx.Client(base_url=url, timeout=60) as client:
        while time.perf_counter() - start < window_s:
            now = time.perf_counter()
            if killed_at is None and pid is not None and now - start > window_s / 4:
                os.kill(pid, signal.SIGKILL)  # a replica this benchmark's cluster started
                killed_at = time.perf_counter()
                logger.info("killed Searcher0 replica pid %d", pid)
            answers.append((now, _post(client, body)))
            if killed_at is not None and restored_at is None:
                try:
                    if _replicas_running(APP, "Searcher0") >= replicas and now - killed_at > 1:
                        restored_at = time.perf_counter()
                except Exception:  # status not available for a moment
                    pass
    after = [(t, a) for t, a in answers if killed_at is not None and t >= killed_at]
    first_full = next((t for t, a in after if a.status == 200 and not a.partial), None)
    return {
        "replica_pid_killed": pid,
        "sent": len(answers),
        "failed": sum(a.status != 200 for _, a in answers),
        "partial": sum(a.partial for _, a in answers),
        "failed_after_kill": sum(a.status != 200 for _, a in after),
        "partial_after_kill": sum(a.partial for _, a in after),
        "first_full_answer_after_kill_s": None
        if first_full is None or killed_at is None
        else round(first_full - killed_at, 3),
        "replicas_restored_after_s": None
        if restored_at is None or killed_at is None
        else round(restored_at - killed_at, 3),
        "latency": _ms([a.seconds for _, a in answers]),
        "generations": sorted({a.generation for _, a in answers if a.generation is not None}),
    }


def _markdown(result: dict[str, Any]) -> str:
    o, b, k = result["overload"], result["baseline"], result["replica_kill"]
    rows = [
        ("baseline single queries: sent / failed", f"{b['sent']} / {b['failed']}"),
        ("baseline p50 / p99 ms", f"{b['latency']['p50_ms']} / {b['latency']['p99_ms']}"),
        ("overload requests sent", str(o["sent"])),
        ("answered 200 (partial)", f"{o['ok']} ({o['partial']})"),
        ("shed 503 / 429 (with Retry-After)", f"{o['shed_503']} / {o['shed_429']} "
         f"({o['shed_with_retry_after']})"),
        ("other failures", str(o["other_failures"])),
        ("p99 ms under overload: all / answered / shed",
         f"{o['all']['p99_ms']} / {o['answered']['p99_ms']} / {o['shed']['p99_ms']}"),
        ("first normal query after overload (s)", str(result["recovery_s"])),
        ("replica kill: queries sent / failed / partial",
         f"{k['sent']} / {k['failed']} / {k['partial']}"),
        ("replica kill: first full answer after (s)", str(k["first_full_answer_after_kill_s"])),
        ("replica kill: every replica running again after (s)",
         str(k["replicas_restored_after_s"])),
        ("generations observed", ", ".join(str(g) for g in result["generations_observed"])),
    ]  # fmt: skip
    c = result["config"]
    lines = [
        "# Reliability benchmark",
        "",
        f"Command: `{result['command']}`  ",
        f"Index: {c['n']:,} synthetic {c['bits']}-bit codes, {c['shards']} shards, nlist "
        f"{c['nlist']}; app: {c['groups']} searcher groups × {c['replicas']} replicas, ingress "
        f"max_ongoing_requests {c['max_ongoing']}, max_queued_requests {c['max_queued']} "
        "(every deployment); loopback only.  ",
        f"Overload: {c['clients']} concurrent clients, {c['requests']} requests of "
        f"{c['batch']} codes × k {c['k']}.  ",
        f"Machine: {result['machine'].get('cpus')} CPUs, {result['machine'].get('memory_gib')} "
        f"GiB; load average at start {result['loadavg_start']}, at end {result['loadavg_end']} "
        "(a shared machine: one run, compare within it).",
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
        "",
        "## Reading",
        "",
        "Shed requests are answered by Serve's proxy (`max_queued_requests` exceeded) with 503 "
        "and `Retry-After`, without waiting for a replica: compare their p99 with the answered "
        "requests' p99, which is queueing behind at most `max_ongoing_requests` + "
        "`max_queued_requests` heavy searches on a shared 2-core machine. The first normal "
        "query after the burst shows the service was not left degraded. With 2 replicas per "
        "searcher group a SIGKILLed replica is covered by the retry on the other one (failed "
        "and partial count the answers of the whole kill window); Serve restarts the replica "
        "in the background. One index is served, so one generation is expected; a second "
        "would mean answers mixed generations.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from cluster.cli_config import parse_config

    argv = sys.argv[1:] if argv is None else argv
    cfg = parse_config(Config, argv, prog="python -m benchmarks.reliability", description=__doc__)
    return run(cfg)


def run(config: Config) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    import httpx

    from benchmarks._synthetic_index import build_code_index
    from benchmarks.serve import make_codes
    from cluster.runtime import RuntimeConfig, ray_runtime
    from serving.app import start_server, stop_server
    from serving.config import ServeConfig

    load_start = os.getloadavg()
    work = Path(config.workdir or tempfile.mkdtemp(prefix="odh-bench-reliability-"))
    db, queries = make_codes(config.n, config.bits, max(config.batch, config.singles), config.seed)
    hexes = [q.tobytes().hex() for q in queries]
    single = {"codes": hexes[:1], "k": 10}
    heavy = {"codes": hexes[: config.batch], "k": config.k}
    result: dict[str, Any] = {
        "benchmark": "reliability",
        "command": command_line(),
        "config": asdict(config),
    }
    try:
        with ray_runtime(RuntimeConfig()):
            index_dir = build_code_index(
                work, db, config.bits, n_shards=config.shards, nlist=config.nlist, seed=0
            )
            serve_cfg = ServeConfig(
                index=index_dir,
                groups=config.groups,
                replicas=config.replicas,
                max_ongoing_requests=config.max_ongoing,
                max_queued_requests=config.max_queued,
                max_search_cost=max(4_000_000, config.batch * config.k * config.nlist),
                max_inflight_cost=max(16_000_000, 4 * config.batch * config.k * config.nlist),
            )
            url = start_server(serve_cfg, host="127.0.0.1", port=config.port, app_name=APP)
            try:
                with httpx.Client(base_url=url, timeout=60) as client:
                    base = [_post(client, {"codes": [h], "k": 10}) for h in hexes[: config.singles]]
                result["baseline"] = {
                    "sent": len(base),
                    "failed": sum(a.status != 200 for a in base),
                    "latency": _ms([a.seconds for a in base]),
                }
                t0 = time.perf_counter()
                over = _overload(url, heavy, config.clients, config.requests)
                over_s = time.perf_counter() - t0
                t_rec = time.perf_counter()
                recovery_s = None
                with httpx.Client(base_url=url, timeout=60) as client:
                    while time.perf_counter() - t_rec < 60:
                        if _post(client, single).status == 200:
                            recovery_s = round(time.perf_counter() - t_rec, 3)
                            break
                        time.sleep(0.05)
                shed = [a for a in over if a.status in (429, 503)]
                result["overload"] = {
                    "sent": len(over),
                    "wall_s": round(over_s, 2),
                    "ok": sum(a.status == 200 for a in over),
                    "partial": sum(a.partial for a in over),
                    "shed_503": sum(a.status == 503 for a in over),
                    "shed_429": sum(a.status == 429 for a in over),
                    "shed_with_retry_after": sum(a.retry_after is not None for a in shed),
                    "other_failures": sum(a.status not in (200, 429, 503) for a in over),
                    "all": _ms([a.seconds for a in over]),
                    "answered": _ms([a.seconds for a in over if a.status == 200]),
                    "shed": _ms([a.seconds for a in shed]),
                }
                result["recovery_s"] = recovery_s
                result["replica_kill"] = _kill_phase(
                    url, single, config.kill_window_s, config.replicas
                )
                gens = {a.generation for a in over + base if a.generation is not None}
                gens |= set(result["replica_kill"]["generations"])
                result["generations_observed"] = sorted(gens)
            finally:
                stop_server(APP)
    finally:
        if config.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    result["machine"] = machine_info()
    result["loadavg_start"] = [round(x, 2) for x in load_start]
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reliability.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "reliability.md").write_text(_markdown(result))
    logger.info("results written to %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
