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

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs.

    Attributes:
        workdir: local directory for every artefact (image set, checkpoint, codes, index).
        source: directory with the Fashion-MNIST IDX ``.gz`` files.
        n_bits: code length.
        warmup_epochs / stage1_epochs / stage2_epochs: training schedule (ODH, BNN resnet_small).
        n_shards: IVF shards of the index.
        port: HTTP port of the query API on 127.0.0.1.
        seed: seed of the split, the training and the evaluation.
        n_queries: how many query images are sent to the API.
    """

    workdir: str
    source: str
    n_bits: int = 64
    warmup_epochs: int = 2
    stage1_epochs: int = 3
    stage2_epochs: int = 3
    n_shards: int = 4
    port: int = 8000
    seed: int = 0
    n_queries: int = 3


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


def run_demo(
    config: DemoConfig,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    out: Callable[[str], Any] = sys.stdout.write,
) -> int:
    """Run the pipeline end to end; returns the process exit code (0 only if every stage passed)."""
    from cluster.report import format_hits
    from cluster.runtime import RuntimeConfig, ray_runtime

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
                config.source, _fresh(paths["images"]), protocol="fmnist-1", seed=config.seed
            )
        with ray_runtime(RuntimeConfig(address=address, num_cpus=num_cpus)):
            with timings.stage("train"):
                from indexer.imageset import load_arrays
                from odh_core.train import TrainConfig, train_encoder

                _, images, labels = load_arrays(str(paths["images"]), ["train"])
                train_config = TrainConfig(
                    model="resnet_small",
                    n_bits=config.n_bits,
                    layer="reactnet",
                    binary=True,
                    method="odh",
                    warmup_epochs=config.warmup_epochs,
                    transition_epoch=config.stage1_epochs,
                    stage2_epochs=config.stage2_epochs,
                    seed=config.seed,
                    num_threads=2,
                )
                checkpoint = train_encoder(images, labels, train_config, _fresh(paths["encoder"]))
            with timings.stage("encode"):
                from indexer.encode import encode

                summary = encode(
                    str(paths["images"]), checkpoint, _fresh(paths["codes"]), num_cpus=1.0
                )
                record["encode"] = summary.to_json()
            with timings.stage("build"):
                from indexer.build import build

                manifest = build(
                    str(paths["codes"]), _fresh(paths["index"]), n_shards=config.n_shards
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
    ]
    out("\n".join(lines) + "\n")
    return 0
