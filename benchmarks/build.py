"""Build benchmark: `indexer.build.build` on Ray vs single-process FAISS, plus encode throughput.

Synthetic clustered codes (hash centres + per-bit flip noise) at each size and code length; for
each configuration: build throughput on an embedded Ray cluster, peak RSS of the process tree,
bytes per code on disk and in RAM, and the same build done by one FAISS process (train on the
same sample + one ``add_with_ids``) in the same run. Then encode throughput on real
Fashion-MNIST images with a freshly initialised (untrained) encoder.

Writes ``benchmarks/results/build.json`` and ``build.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._machine import command_line, machine_info
from odh_core.options import option

logger = logging.getLogger(__name__)

RESULTS = Path(__file__).parent / "results"


class RssSampler:
    """Samples the summed RSS of a process and all its descendants (Ray workers, raylet...)."""

    def __init__(self, pid: int | None = None, interval: float = 0.1, tree: bool = True) -> None:
        self.pid = pid or os.getpid()
        self.tree = tree
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def tree_rss(self) -> int:
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root, *(root.children(recursive=True) if self.tree else [])]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # ended (or hidden) between listing and reading
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.tree_rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = self.tree_rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.tree_rss())


def rss_of(pid: int) -> int:
    """Resident set size of one process in bytes (0 when it is gone; pid 0: this process)."""
    import psutil

    try:
        return int(psutil.Process(pid or None).memory_info().rss)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0


def faiss_single_process(
    codes: np.ndarray, ids: np.ndarray, n_bits: int, nlist: int, train_size: int, seed: int
) -> tuple[float, int]:
    """Seconds and ntotal of train (same sample and settings as the Ray build) + one add."""
    import faiss

    from indexer.quantizer import train_ivf

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    ivf = train_ivf(codes, n_bits, nlist, train_size=train_size, seed=seed)
    ivf.add_with_ids(codes, ids)
    seconds = time.perf_counter() - t0
    ntotal = int(ivf.ntotal)
    del ivf
    return seconds, ntotal


_RAM_PROBE = """
import sys, faiss
from benchmarks.build import rss_of
from indexer.manifest import read_manifest
from indexer.shards import load_shard
m = read_manifest(sys.argv[1])
before = rss_of(0)
shards = [load_shard(sys.argv[1], e, verify=False) for e in m.shards]
print(rss_of(0) - before)
"""


def _index_ram_bytes(index_dir: str) -> int:
    """RSS growth of a fresh process that loads every shard (not memory-mapped)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _RAM_PROBE, index_dir],
        check=True, capture_output=True, text=True, cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    return int(out.stdout.strip().splitlines()[-1])


def bench_build(n: int, n_bits: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import shutil

    from indexer.build import BuildConfig, build
    from indexer.codes import write_code_set
    from indexer.synthetic_codes import clustered_codes

    t_gen = time.perf_counter()
    codes = clustered_codes(n, n_bits, args.centres, args.flip, seed=n_bits)
    ids = np.arange(n, dtype=np.int64)
    root = workdir / f"n{n}-b{n_bits}"
    code_dir = write_code_set(str(root / "codes"), ids, codes, n_bits)
    logger.info("%d codes of %d bits generated in %.1f s", n, n_bits, time.perf_counter() - t_gen)

    cfg = BuildConfig(
        n_shards=args.shards, nlist=args.nlist, train_size=args.train_size, seed=0, resume=False
    )
    index_dir = root / "index"
    with RssSampler() as rss:
        t0 = time.perf_counter()
        manifest = build(code_dir, str(index_dir), config=cfg)
        wall = time.perf_counter() - t0
    shard_bytes = sum((index_dir / e.file).stat().st_size for e in manifest.shards)
    meta_bytes = sum((index_dir / e.meta_file).stat().st_size for e in manifest.shards)

    ram_bytes = _index_ram_bytes(str(index_dir))

    with RssSampler(tree=False) as faiss_rss:
        faiss_s, faiss_n = faiss_single_process(
            codes, ids, n_bits, args.nlist, args.train_size, seed=0
        )
    assert faiss_n == n == manifest.ntotal
    shutil.rmtree(root, ignore_errors=True)
    row = {
        "n_codes": n,
        "n_bits": n_bits,
        "n_shards": args.shards,
        "nlist": args.nlist,
        "train_size": args.train_size,
        "wall_s": round(wall, 2),
        "codes_per_s": round(n / wall),
        "faiss_wall_s": round(faiss_s, 2),
        "faiss_codes_per_s": round(n / faiss_s),
        "ratio_vs_faiss": round(faiss_s / wall, 3),
        "bytes_per_code": round(shard_bytes / n, 3),
        "meta_bytes_per_code": round(meta_bytes / n, 3),
        "ram_bytes_per_code": round(ram_bytes / n, 3),
        "peak_rss_bytes": rss.peak,  # driver + Ray processes (raylet, GCS, workers)
        "faiss_peak_rss_bytes": faiss_rss.peak,
    }
    logger.info("build result: %s", row)
    return row


def bench_encode(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    """images/s per encoder actor on real Fashion-MNIST images (untrained weights)."""
    import pyarrow as pa
    import torch

    from indexer.converters.fashion_mnist import (
        CLASS_NAMES,
        fashion_mnist_source,
        read_fashion_mnist,
    )
    from indexer.converters.png import encode_pngs
    from indexer.encode import EncodeConfig, encode
    from indexer.imageset import IMAGE_SET_SCHEMA, DatasetInfo, write_image_set
    from odh_core.checkpoint import EncoderConfig, save_checkpoint
    from odh_core.models import create_encoder

    source = fashion_mnist_source(None)
    images = read_fashion_mnist(source, "train")[0][: args.encode_images]
    n = len(images)
    table = pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "image": pa.array(encode_pngs(images), pa.binary()),
        }
    )
    table = table.cast(pa.schema([IMAGE_SET_SCHEMA.field("id"), IMAGE_SET_SCHEMA.field("image")]))
    info = DatasetInfo(
        name="fmnist-bench", class_names=CLASS_NAMES, image_size=(28, 28), channels=1
    )
    image_set = str(workdir / "fmnist")
    write_image_set(table, image_set, info, rows_per_part=2_000)
    torch.manual_seed(0)
    model = create_encoder("resnet_small", n_bits=64, n_classes=10)
    ckpt = str(workdir / "ckpt")
    save_checkpoint(
        model, EncoderConfig(name="resnet_small", n_bits=64, image_size=28, channels=1,
                             n_classes=10), ckpt,
    )  # fmt: skip
    rows = []
    for actors in args.encode_actors:
        summary = encode(EncodeConfig(
            image_set, ckpt, str(workdir / f"codes-{actors}"), batch_size=256,
            concurrency=actors, num_cpus=0.5,
        ))  # fmt: skip
        rows.append(
            {
                "images": n,
                "actors": actors,
                "seconds": summary.seconds,
                "images_per_s": summary.images_per_s,
                "images_per_s_per_actor": round(summary.images_per_s / actors, 1),
                "encoded": summary.encoded,
                "weights": "untrained (throughput only)",
            }
        )
        logger.info("encode result: %s", rows[-1])
    return rows


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Build benchmark",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine'].get('cpus')} CPUs, {result['machine'].get('memory_gib')} GiB,"
        f" {result['machine'].get('platform')}; faiss {result['machine'].get('faiss')}, "
        f"ray {result['machine'].get('ray')}.  ",
        f"Codes: synthetic, {result['settings']['centres']} hash centres, per-bit flip "
        f"{result['settings']['flip']}; nlist {result['settings']['nlist']}, "
        f"train sample {result['settings']['train_size']}, {result['settings']['shards']} shards.",
        "",
        "`odh build` = `indexer.build.build` on an embedded Ray cluster (read codes Parquet, "
        "train, Ray tasks fill shards, write shard + meta files with sha256, manifest). "
        "`FAISS` = one process: train on the same sample + one `add_with_ids`, nothing written. "
        "Peak RSS of odh build sums the driver and every Ray process (raylet, GCS, workers); "
        "FAISS peak RSS is its one process. RAM B/code: RSS growth of a fresh process loading "
        "every shard.",
        "",
        "| codes | bits | odh build s | odh codes/s | FAISS s | FAISS codes/s | ratio | "
        "index B/code (disk) | meta B/code | RAM B/code | peak RSS | FAISS peak RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["build"]:
        lines.append(
            f"| {r['n_codes']:,} | {r['n_bits']} | {r['wall_s']} | {r['codes_per_s']:,} | "
            f"{r['faiss_wall_s']} | {r['faiss_codes_per_s']:,} | {r['ratio_vs_faiss']} | "
            f"{r['bytes_per_code']} | {r['meta_bytes_per_code']} | {r['ram_bytes_per_code']} | "
            f"{r['peak_rss_bytes'] / 2**30:.2f} GiB | {r['faiss_peak_rss_bytes'] / 2**30:.2f} GiB |"
        )
    lines += ["", "## Targets", ""]
    for line in result["targets"]:
        lines.append(f"- {line}")
    if result["encode"]:
        lines += [
            "",
            "## Encode throughput (Fashion-MNIST, **untrained** weights: throughput only)",
            "",
            "| images | actors | seconds | images/s | images/s per actor |",
            "|---:|---:|---:|---:|---:|",
        ]
        for r in result["encode"]:
            lines.append(
                f"| {r['images']:,} | {r['actors']} | {r['seconds']} | {r['images_per_s']} | "
                f"{r['images_per_s_per_actor']} |"
            )
    return "\n".join(lines) + "\n"


def _targets(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    biggest = max((r["n_codes"] for r in rows), default=0)
    for r in rows:
        if r["n_codes"] == biggest:
            ok = r["ratio_vs_faiss"] >= 0.8
            out.append(
                f"{'MET' if ok else 'MISSED'}: build throughput at {r['n_codes']:,} x {r['n_bits']}"
                f" bits = {r['ratio_vs_faiss']} x single-process FAISS (target >= 0.8)"
            )
        if r["n_bits"] == 64:
            ok = r["bytes_per_code"] <= 17
            out.append(
                f"{'MET' if ok else 'MISSED'}: index bytes per 64-bit code at {r['n_codes']:,} = "
                f"{r['bytes_per_code']} (target <= 17; 8 B code + 8 B id)"
            )
    return out


@dataclass(frozen=True)
class Config:
    """Build and encode throughput on clustered synthetic codes."""

    sizes: tuple[int, ...] = option((1_000_000, 10_000_000), help="index sizes (codes)")
    bits: tuple[int, ...] = option((64, 128), help="code lengths")
    nlist: int = option(1024, help="IVF lists")
    shards: int = option(4, help="index shards")
    train_size: int = option(100_000, help="quantizer training sample")
    centres: int = option(4096, help="clusters of the synthetic codes")
    flip: float = option(0.05, help="bit-flip probability around a centre")
    encode_images: int = option(10_000, help="images of the encode measurement (0 skips it)")
    encode_actors: tuple[int, ...] = option((1,), help="encoder actor counts to measure")
    num_cpus: int | None = option(None, help="embedded Ray cluster CPUs")
    workdir: str | None = option(None, help="scratch directory (default: a temp dir)")
    output_dir: str = option(str(RESULTS), help="where build.json and build.md go")


def main(argv: Sequence[str] | None = None) -> int:
    from cluster.cli_config import parse_config

    argv = sys.argv[1:] if argv is None else argv
    return run(parse_config(Config, argv, prog="python -m benchmarks.build", description=__doc__))


def run(config: Config) -> int:
    args = argparse.Namespace(**asdict(config))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import faiss  # noqa: F401  (recorded by machine_info)
    import ray  # noqa: F401

    from cluster.runtime import RuntimeConfig, ray_runtime

    command = command_line()
    with (
        tempfile.TemporaryDirectory(dir=args.workdir) as tmp,
        ray_runtime(RuntimeConfig(num_cpus=args.num_cpus)),
    ):
        workdir = Path(tmp)
        rows = [bench_build(n, b, args, workdir) for n in args.sizes for b in args.bits]
        encode_rows = bench_encode(args, workdir) if args.encode_images > 0 else []
    result = {
        "benchmark": "build",
        "command": command,
        "machine": machine_info(),
        "settings": {
            "nlist": args.nlist,
            "shards": args.shards,
            "train_size": args.train_size,
            "centres": args.centres,
            "flip": args.flip,
        },
        "build": rows,
        "encode": encode_rows,
        "targets": _targets(rows),
    }
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "build.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "build.md").write_text(_markdown(result))
    logger.info("wrote %s and %s", out / "build.json", out / "build.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
