"""One proxy mode of the serving benchmark, in its own process.

Ray Serve reads ``RAY_SERVE_ENABLE_HA_PROXY`` / ``RAY_SERVE_THROUGHPUT_OPTIMIZED`` when it is
imported, in every Ray process, so each proxy mode needs its own Ray instance started with the
variables set. ``benchmarks.serve`` runs this module as a child process per mode and round::

    python -m benchmarks._serve_modes SPEC.json OUT.json

``SPEC.json`` is a :class:`ModeSpec`; ``OUT.json`` receives one :class:`ModeSamples` per layout
(raw latency samples, so rounds pool before percentiles are taken).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cluster.runtime import proxy_env
from serving.config import PROXY_MODES, RESPONSE_FORMATS

logger = logging.getLogger(__name__)

#: Proxy modes and the environment each sets before Ray starts (the one table ``odh serve`` uses).
PROXY_ENV: Mapping[str, Mapping[str, str]] = PROXY_MODES
#: (placement, searcher groups) measured in each mode.
LAYOUTS: tuple[tuple[str, int], ...] = (("split", 1), ("split", 2), ("ingress", 1))


@dataclass(frozen=True)
class ModeSpec:
    """What one child measures."""

    proxy: str
    index_dir: str
    queries_file: str  # .npy of packed query codes
    nprobe: int
    k: int
    singles: int
    batch: int
    budget_s: float
    port: int
    layouts: tuple[tuple[str, int], ...] = LAYOUTS
    #: answer formats of the client (``serving.wire``), each measured per layout
    formats: tuple[str, ...] = ("arrow",)
    #: batch requests in flight at once (client threads, one connection each)
    concurrency: tuple[int, ...] = (1,)

    def __post_init__(self) -> None:
        if self.proxy not in PROXY_ENV:
            raise ValueError(f"ModeSpec.proxy must be one of {list(PROXY_ENV)}, got {self.proxy!r}")
        if not self.formats or any(f not in RESPONSE_FORMATS for f in self.formats):
            raise ValueError(
                f"ModeSpec.formats must be among {list(RESPONSE_FORMATS)}, got {self.formats}"
            )
        if not self.concurrency or min(self.concurrency) < 1:
            raise ValueError(f"ModeSpec.concurrency must be >= 1, got {self.concurrency}")


@dataclass
class ModeSamples:
    """Raw measurements of one layout, answer format and batch concurrency in one proxy mode
    (one round); single queries are measured at concurrency 1 only."""

    proxy: str
    placement: str
    groups: int
    hops: int
    format: str = "json"
    concurrency: int = 1
    single_s: list[float] = field(default_factory=list)
    batch_s: list[float] = field(default_factory=list)
    batch_queries: int = 0
    batch_wall_s: float = 0.0
    distances: list[list[int]] = field(default_factory=list)
    listeners: list[str] = field(default_factory=list)


def timed_singles(
    fn: Callable[[np.ndarray], Any], queries: np.ndarray, budget_s: float
) -> list[float]:
    """Latency of one query at a time (bounded by the query count and ``budget_s``)."""
    out: list[float] = []
    stop = time.perf_counter() + budget_s
    for q in queries:
        t = time.perf_counter()
        fn(q[None, :])
        out.append(time.perf_counter() - t)
        if time.perf_counter() > stop:
            break
    return out


def timed_batches(
    fn: Callable[[np.ndarray], np.ndarray], queries: np.ndarray, batch: int, budget_s: float
) -> tuple[list[float], int, float, np.ndarray]:
    """Batch latencies, queries answered, wall seconds and the distances of the first pass over
    ``queries`` (recall). Passes over ``queries`` repeat until ``budget_s`` is spent (at least
    one), so a fast configuration is timed over as many requests as a slow one's budget."""
    lat: list[float] = []
    dists = []
    done = 0
    starts = list(range(0, len(queries) - batch + 1, batch))
    start = time.perf_counter()
    first = True
    while first or time.perf_counter() - start < budget_s:
        for s in starts:
            t = time.perf_counter()
            d = fn(queries[s : s + batch])
            lat.append(time.perf_counter() - t)
            if first:
                dists.append(d)
            done += batch
            if not first and time.perf_counter() - start > budget_s:
                break
        first = False
    return lat, done, time.perf_counter() - start, np.concatenate(dists)


def timed_concurrent_batches(
    fns: list[Callable[[np.ndarray], np.ndarray]],
    queries: np.ndarray,
    batch: int,
    budget_s: float,
) -> tuple[list[float], int, float, np.ndarray]:
    """:func:`timed_batches` with ``len(fns)`` requests in flight (one thread per function,
    each taking the next batch as it finishes one; the first pass covers every batch)."""
    import threading

    starts = list(range(0, len(queries) - batch + 1, batch))
    lock = threading.Lock()
    lat: list[float] = []
    dists: dict[int, np.ndarray] = {}
    stop = time.perf_counter() + budget_s
    issued = 0
    done = 0

    def worker(fn: Callable[[np.ndarray], np.ndarray]) -> None:
        nonlocal issued, done
        while True:
            with lock:
                # one full pass over the queries, then more passes until the budget is spent
                if issued >= len(starts) and time.perf_counter() > stop:
                    return
                s = starts[issued % len(starts)]
                issued += 1
            t = time.perf_counter()
            d = fn(queries[s : s + batch])
            with lock:
                lat.append(time.perf_counter() - t)
                dists.setdefault(s, d)
                done += batch

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(fn,)) for fn in fns]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - start
    return lat, done, wall, np.concatenate([dists[s] for s in sorted(dists)])


def _http_search(client: Any, nprobe: int, k: int) -> Callable[[np.ndarray], np.ndarray]:
    def run(q: np.ndarray) -> np.ndarray:
        result = client.search(codes=q, k=k, nprobe=nprobe)
        if result.partial:
            raise RuntimeError(f"partial answer: groups {result.missing_groups} missing")
        return np.asarray(result.distance_array, dtype=np.int64)

    return run


def _listeners(pids: set[int]) -> list[str]:
    """TCP listen addresses of this process tree (``ss``), to record what each mode exposes."""
    try:
        out = subprocess.run(
            ["ss", "-Hltnp"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 6:
            continue
        owners = parts[5]
        if any(f"pid={p}," in owners for p in pids):
            name = owners.split('"')[1] if '"' in owners else "?"
            found.append(f"{parts[3]} {name}")
    return sorted(set(found))


def _tree_pids() -> set[int]:
    """This process and its descendants (the embedded Ray cluster: GCS, raylet, workers)."""
    import psutil

    me = psutil.Process()
    return {me.pid} | {p.pid for p in me.children(recursive=True)}


def measure(spec: ModeSpec) -> list[ModeSamples]:
    """Start Ray and Serve in this process (the proxy env must already be set) and measure."""
    import ray
    from ray import serve

    from serving.app import start_server

    for key, value in PROXY_ENV[spec.proxy].items():
        if os.environ.get(key) != value:
            raise RuntimeError(f"proxy {spec.proxy!r} needs {key}={value} before Ray starts")
    cpus = os.cpu_count() or 2
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    out: list[ModeSamples] = []
    try:
        for placement, groups in spec.layouts:
            searcher_cpus = max(0.25, cpus / (2 * groups))
            url = start_server(
                spec.index_dir,
                port=spec.port,
                groups=groups,
                placement=placement,
                # FAISS threads: the machine's cores split over the groups, as in-process FAISS
                # uses every core for its batches.
                num_threads=max(1, cpus // groups),
                searcher_cpus=min(searcher_cpus, 1.0),
                # latency is measured, not deadlines: a slow moment of a shared machine must
                # not turn into a 503 that ends the run
                timeout_s=30.0,
                app_name="odh-bench",
            )
            try:
                out += _measure_layout(spec, url, placement, groups)
            finally:
                serve.delete("odh-bench")  # Serve itself stays up for the next layout
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    return out


def _measure_layout(spec: ModeSpec, url: str, placement: str, groups: int) -> list[ModeSamples]:
    """Every (answer format, batch concurrency) of one served layout."""
    from serving.client import ODHClient

    out: list[ModeSamples] = []
    queries = np.load(spec.queries_file)
    for fmt in spec.formats:
        clients = [
            ODHClient(url, timeout=120, response_format=fmt) for _ in range(max(spec.concurrency))
        ]
        try:
            runs = [_http_search(c, spec.nprobe, spec.k) for c in clients]
            for q in queries[:20]:  # warm-up: connections, replicas, page cache
                runs[0](q[None, :])
            # Serve's proxy actor (default and throughput modes) reaches the ingress through
            # a handle: one more hop. HAProxy forwards HTTP to the ingress replica's own port.
            handle_hops = clients[0].search(codes=queries[:1], k=spec.k, trace=True).hops
            hops = int(handle_hops or 0) + (0 if spec.proxy == "haproxy" else 1)
            for conc in spec.concurrency:
                single: list[float] = []
                if conc == 1:
                    single = timed_singles(runs[0], queries[: spec.singles], spec.budget_s)
                    lat, done, wall, dists = timed_batches(
                        runs[0], queries, spec.batch, spec.budget_s
                    )
                else:
                    lat, done, wall, dists = timed_concurrent_batches(
                        runs[:conc], queries, spec.batch, spec.budget_s
                    )
                out.append(
                    ModeSamples(
                        proxy=spec.proxy, placement=placement, groups=groups, hops=hops,
                        format=fmt, concurrency=conc, single_s=single, batch_s=lat,
                        batch_queries=done, batch_wall_s=wall, distances=dists.tolist(),
                        listeners=_listeners(_tree_pids()),
                    )
                )  # fmt: skip
                logger.info(
                    "%s %s g%d %s ×%d: single p50 %s, batch %d QPS",
                    spec.proxy, placement, groups, fmt, conc,
                    f"{1e3 * float(np.median(single)):.2f} ms" if single else "-", done / wall,
                )  # fmt: skip
        finally:
            for c in clients:
                c.close()
    return out


def run_mode(spec: ModeSpec, workdir: Path, timeout_s: float = 900.0) -> list[ModeSamples]:
    """Run :func:`measure` in a child process with the proxy mode's environment."""
    spec_file = workdir / f"spec-{spec.proxy}.json"
    out_file = workdir / f"out-{spec.proxy}.json"
    spec_file.write_text(json.dumps(asdict(spec)))
    out_file.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in _ALL_PROXY_KEYS}
    env.update(proxy_env(spec.proxy))
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # a proxy that is slow to start on a busy machine is restarted in a loop after 3 × 5 s
    env.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "30")
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    cmd = [sys.executable, "-m", "benchmarks._serve_modes", str(spec_file), str(out_file)]
    proc = subprocess.run(cmd, env=env, timeout=timeout_s, check=False)
    if proc.returncode != 0 or not out_file.is_file():
        raise RuntimeError(f"proxy mode {spec.proxy!r}: child exited {proc.returncode}")
    return [ModeSamples(**row) for row in json.loads(out_file.read_text())]


_ALL_PROXY_KEYS = {key for env in PROXY_ENV.values() for key in env}


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    if len(argv) != 2:
        sys.stderr.write("usage: python -m benchmarks._serve_modes SPEC.json OUT.json\n")
        return 2
    raw: dict[str, Any] = json.loads(Path(argv[0]).read_text())
    raw["layouts"] = tuple((str(p), int(g)) for p, g in raw.get("layouts", LAYOUTS))
    raw["formats"] = tuple(raw.get("formats", ("arrow",)))
    raw["concurrency"] = tuple(int(c) for c in raw.get("concurrency", (1,)))
    samples = measure(ModeSpec(**raw))
    Path(argv[1]).write_text(json.dumps([asdict(s) for s in samples]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
