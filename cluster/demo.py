"""`odh demo`: the whole pipeline on real Fashion-MNIST images, on an embedded Ray cluster.

data → train → encode → build → serve → query (over HTTP, by image bytes) → eval → shutdown, each
stage through the same function its own `odh` subcommand calls. Stage times and artefact paths are
printed at the end and written to ``<workdir>/demo.json``.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cluster.runtime import RuntimeConfig
from indexer.build import BuildConfig
from indexer.converters.configs import FashionMnistConfig
from odh_core.config import TrainConfig
from odh_core.options import option, option_like
from serving.config import DEFAULT_PORT

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """The whole pipeline on Fashion-MNIST (ODH, BNN resnet_small), locally."""

    workdir: str = option("odh-data", help="local directory for every artefact")
    source: str | None = option_like(FashionMnistConfig, "source")
    n_bits: int = option_like(TrainConfig, "n_bits")
    # 3 + 12 + 10 epochs in the channels_last format: 414 s of training, tie-aware mAP@ALL 0.782,
    # 496 s in all on the 2-core dev machine (2 + 8 + 6 in NCHW: 272 s, 0.735, 335 s in all)
    warmup_epochs: int = option_like(TrainConfig, "warmup_epochs", default=3)
    stage1_epochs: int = option_like(TrainConfig, "transition_epoch", default=12)
    stage2_epochs: int = option_like(TrainConfig, "stage2_epochs", default=10)
    channels_last: bool = option_like(
        TrainConfig,
        "channels_last",
        default=True,
        help="train in the channels_last memory format (on in the demo: faster convolutions "
        "on CPU, spent on a longer schedule)",
    )
    num_threads: int = option_like(
        TrainConfig,
        "num_threads",
        default=2,
        help="torch threads of the training worker (the demo uses both cores of a laptop)",
    )
    n_shards: int = option_like(BuildConfig, "n_shards")
    port: int = option(DEFAULT_PORT, help="HTTP port of the query API on 127.0.0.1")
    seed: int = option(0, help="seed of the split, the training and the evaluation")
    n_queries: int = option(3, help="query images sent to the API", flag="--queries")

    def __post_init__(self) -> None:
        if not self.workdir:
            raise ValueError("DemoConfig.workdir is required")
        if self.n_queries < 1:
            raise ValueError(f"DemoConfig.n_queries must be >= 1, got {self.n_queries}")
        self.train_config()  # validates the training options, naming the field

    def train_config(self) -> TrainConfig:
        """The demo's training: the defaults of ``TrainConfig`` with this schedule."""
        return TrainConfig(
            n_bits=self.n_bits,
            warmup_epochs=self.warmup_epochs,
            transition_epoch=self.stage1_epochs,
            stage2_epochs=self.stage2_epochs,
            seed=self.seed,
            num_threads=self.num_threads,
            channels_last=self.channels_last,
        )


@dataclass
class _Timings:
    stages: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        logger.info("=== stage %s", name)
        start = time.perf_counter()
        yield
        self.stages[name] = round(time.perf_counter() - start, 2)
        logger.info("=== stage %s done in %.1f s", name, self.stages[name])


def _fresh(path: Path) -> str:
    if path.exists():
        shutil.rmtree(path)
    return str(path)


def _pick_queries(image_set: str, n: int, seed: int) -> list[dict[str, Any]]:
    import numpy as np

    from indexer.imageset import read_image_set

    table = read_image_set(image_set, splits=["query"], columns=["id", "image", "label", "key"])
    rows = np.random.default_rng(seed).choice(table.num_rows, size=n, replace=False)
    return [table.slice(int(r), 1).to_pylist()[0] for r in sorted(rows)]


def _serve_hint(index: Path, port: int) -> list[str]:
    """How to keep the query API up after the demo (it stops with the demo) and see results."""
    url = f"http://127.0.0.1:{port}/"
    return [
        "The demo's server stopped with it. To keep one running and search in a browser:",
        f"  odh serve --index {index} --port {port}",
        f"  then open {url} (drop an image, or click a database image, to see its neighbours)",
        "",
    ]


def run_demo(
    config: DemoConfig,
    runtime: RuntimeConfig | None = None,
    *,
    out: Callable[[str], Any] = sys.stdout.write,
) -> int:
    """Run the pipeline end to end; returns the process exit code (0 only if every stage passed)."""
    from cluster.report import format_hits
    from cluster.runtime import ray_runtime
    from indexer.converters.fashion_mnist import fashion_mnist_source

    work = Path(config.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    paths = {
        "images": work / "images",
        "encoder": work / "encoder",
        "codes": work / "codes",
        "index": work / "index",
        "metrics": work / "metrics.json",
    }
    timings = _Timings()
    record: dict[str, Any] = {"config": asdict(config), "artefacts": {}, "stages": {}}
    total = time.perf_counter()
    try:
        with timings.stage("data"):
            from indexer.converters.fashion_mnist import convert_fashion_mnist

            info = convert_fashion_mnist(
                fashion_mnist_source(config.source),
                _fresh(paths["images"]),
                protocol="fmnist-1",
                seed=config.seed,
            )
        with ray_runtime(runtime):
            with timings.stage("train"):
                from indexer.training import train_encoder

                checkpoint = train_encoder(
                    str(paths["images"]), config.train_config(), _fresh(paths["encoder"])
                )
            with timings.stage("encode"):
                from indexer.encode import EncodeConfig, encode

                summary = encode(
                    EncodeConfig(str(paths["images"]), checkpoint, _fresh(paths["codes"]))
                )
                record["encode"] = summary.to_json()
            with timings.stage("build"):
                from indexer.build import build

                manifest = build(
                    str(paths["codes"]),
                    _fresh(paths["index"]),
                    config=BuildConfig(n_shards=config.n_shards),
                )
            with timings.stage("serve"):
                from serving.app import start_server

                url = start_server(str(paths["index"]), host="127.0.0.1", port=config.port)
            with timings.stage("query"):
                from serving.client import ODHClient

                queries = _pick_queries(str(paths["images"]), config.n_queries, config.seed)
                result = ODHClient(url).search(images=[q["image"] for q in queries], k=10)
                names = [
                    f"query id {q['id']} ({info.class_names[q['label'][0]]}, {q['key']})"
                    for q in queries
                ]
                out(format_hits(names, result, class_names=info.class_names) + "\n")
        with timings.stage("eval"):
            from indexer.evaluate import evaluate

            metrics = evaluate(str(paths["codes"]), str(paths["images"]), seed=config.seed)
            paths["metrics"].write_text(json.dumps(metrics, indent=2) + "\n")
    except Exception:
        logger.exception("demo failed")
        record["stages"] = timings.stages
        (work / "demo.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        return 1

    record["stages"] = timings.stages
    record["total_s"] = round(time.perf_counter() - total, 2)
    record["metrics"] = metrics
    record["artefacts"] = {k: str(v) for k, v in paths.items()}
    record["artefacts"]["checkpoint"] = checkpoint
    record["index"] = {"ntotal": sum(s.ntotal for s in manifest.shards), "nlist": manifest.nlist}
    (work / "demo.json").write_text(json.dumps(record, indent=2, default=str) + "\n")

    lines = ["", "ODH index demo finished.", "", "stage     seconds"]
    lines += [f"{name:<9} {secs:>7.1f}" for name, secs in timings.stages.items()]
    lines += [f"{'total':<9} {record['total_s']:>7.1f}", "", "artefacts:"]
    lines += [f"  {name:<10} {value}" for name, value in record["artefacts"].items()]
    lines += [
        "",
        f"fmnist-1 quality ({config.n_bits}-bit ODH BNN, {metrics.get('n_query')} queries vs "
        f"{metrics.get('n_database')} database images):",
        f"  tie-aware mAP@ALL  {metrics['map_all_tie_aware']:.4f}",
        f"  shuffled mAP@ALL   {metrics['map_all_shuffled']:.4f}",
        f"  tie-aware mAP@1000 {metrics['map_1000_tie_aware']:.4f}",
        f"  P@H<=2             {metrics['p_h2']:.4f}",
        "",
        *_serve_hint(paths["index"], config.port),
    ]
    out("\n".join(lines) + "\n")
    return 0
