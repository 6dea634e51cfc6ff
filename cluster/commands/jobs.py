"""`odh encode`, `odh build`, `odh index`, `odh eval`: the batch side."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odh_core.options import option

if TYPE_CHECKING:
    from cluster.index_job import IndexJobConfig
    from cluster.runtime import RuntimeConfig
    from indexer.build import BuildConfig
    from indexer.encode import EncodeConfig

logger = logging.getLogger("odh")

_STORAGE_HELP = "fsspec storage options (JSON)"


@dataclass(frozen=True)
class EncodeRunConfig:
    """Where the encode job reports and how it reaches storage (not written beside the codes)."""

    pushgateway: str | None = option(None, help="Prometheus Pushgateway URL for metrics")
    storage_options: dict[str, Any] | None = option(None, help=_STORAGE_HELP)


@dataclass(frozen=True)
class BuildTargetConfig:
    """What `odh build` does: a new index from --codes, or --append / --delete on --output."""

    output: str = option(help="index directory or s3:// prefix")
    codes: str | None = option(None, help="codes directory to build a new index from")
    append: str | None = option(None, help="add the codes of this directory to --output")
    delete_ids: str | None = option(None, help="file of ids to remove from --output")
    delete: tuple[int, ...] | None = option(None, help="ids to remove from --output")
    storage_options: dict[str, Any] | None = option(None, help=_STORAGE_HELP)

    def __post_init__(self) -> None:
        modes = sum(x is not None for x in (self.codes, self.append)) + bool(
            self.delete_ids or self.delete
        )
        if modes != 1:
            raise ValueError("give exactly one of --codes, --append CODES, --delete-ids/--delete")


@dataclass(frozen=True)
class EvalConfig:
    """Retrieval quality of a code set (ALGORITHMS.md §4)."""

    codes: str = option(help="codes directory")
    images: str = option(help="the image set (its protocol names the splits)")
    output: str | None = option(None, help="also write the metrics JSON here")
    seed: int = option(0, help="seed of the shuffled tie order")


@dataclass(frozen=True)
class IndexSubmitConfig:
    """Run the index job here, or submit it to a cluster's Jobs API."""

    submit: str | None = option(
        None, help="submit as a Ray job to this dashboard (e.g. http://HEAD:8265) instead"
    )
    runtime_env_json: dict[str, Any] | None = option(
        None,
        help="runtime env for --submit (default: this project + its pinned requirements; "
        "'{}' when the cluster image already holds the project)",
    )
    wait: bool = option(True, help="with --submit: return at once", flag="--no-wait")


def cmd_encode(config: EncodeConfig, run: EncodeRunConfig, runtime: RuntimeConfig) -> int:
    from cluster.runtime import ray_runtime
    from indexer.encode import encode

    with ray_runtime(runtime):
        summary = encode(config, pushgateway=run.pushgateway, storage_options=run.storage_options)
    sys.stdout.write(json.dumps(summary.to_json(), indent=2) + "\n")
    return 0


def cmd_build(target: BuildTargetConfig, config: BuildConfig, runtime: RuntimeConfig) -> int:
    from cluster.runtime import ray_runtime
    from indexer.build import build
    from indexer.update import append, delete, read_id_file

    options = target.storage_options
    with ray_runtime(runtime):
        if target.append is not None:
            manifest = append(target.append, target.output, storage_options=options)
        elif target.delete_ids or target.delete:
            ids = list(target.delete or [])
            if target.delete_ids:
                ids += read_id_file(target.delete_ids, options).tolist()
            manifest = delete(target.output, ids, storage_options=options)
        else:
            assert target.codes is not None  # BuildTargetConfig checked the mode
            manifest = build(target.codes, target.output, config=config, storage_options=options)
    logger.info(
        "index %s generation %d: %d codes in %d shards, nlist=%d, %d deleted",
        target.output,
        manifest.generation,
        manifest.ntotal,
        manifest.n_shards,
        manifest.nlist,
        manifest.deleted_count,
    )
    return 0


def cmd_eval(config: EvalConfig) -> int:
    from indexer.evaluate import evaluate

    metrics = evaluate(config.codes, config.images, seed=config.seed)
    text = json.dumps(metrics, indent=2)
    if config.output:
        Path(config.output).write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


def cmd_index(config: IndexJobConfig, submit: IndexSubmitConfig, runtime: RuntimeConfig) -> int:
    from cluster.index_job import index, submit_index_job
    from cluster.runtime import ray_runtime

    if submit.submit:
        job_id = submit_index_job(
            config, submit.submit, runtime_env=submit.runtime_env_json, wait=submit.wait
        )
        sys.stdout.write(f"{job_id}\n")
        return 0
    with ray_runtime(runtime):
        record = index(config)  # its "config" has the credentials redacted
    sys.stdout.write(json.dumps(record, indent=2, default=str) + "\n")
    return 0
