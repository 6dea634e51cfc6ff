"""`odh index`: the batch indexing job (encode → build) as one resumable job, run here or submitted
to a Ray cluster with ``ray job submit`` semantics (the Jobs API) and a runtime env pinned to this
project's requirements.

Resumability, stage by stage:

* **encode** is skipped when ``<output>/codes`` already holds a finished encode of the same image
  set with the same checkpoint (``_summary.json`` written last, checkpoint sha256 equal, every
  input row accounted for); otherwise it runs again from scratch.
* **build** resumes by itself: a rerun reuses the trained quantizer and every finished shard
  (sha256-checked completion markers) and builds only what is missing.
"""

from __future__ import annotations

import logging
import shlex
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class IndexJobConfig:
    """One indexing job.

    Attributes:
        images: image set (directory or ``s3://`` prefix).
        checkpoint: encoder checkpoint directory.
        output: job root; codes go to ``<output>/codes``, the index to ``<output>/index``.
        n_shards / nlist / train_size / seed: the build (see ``odh build``).
        batch_size / concurrency / actor_cpus: the encode actor pool (see ``odh encode``).
        storage_options: fsspec options for ``s3://`` paths (endpoint, credentials from env).
    """

    images: str
    checkpoint: str
    output: str
    n_shards: int = 4
    nlist: int | None = None
    train_size: int = 100_000
    seed: int = 0
    batch_size: int = 256
    concurrency: int = 1
    actor_cpus: float = 0.5
    storage_options: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        for name in ("images", "checkpoint", "output"):
            if not getattr(self, name):
                raise ValueError(f"IndexJobConfig.{name} is required")
        if self.n_shards < 1:
            raise ValueError(f"n_shards must be >= 1, got {self.n_shards}")

    def command(self, address: str = "auto") -> list[str]:
        """The `odh index` command line that runs this job on a cluster."""
        args = ["odh", "index", "--images", self.images, "--checkpoint", self.checkpoint,
                "--output", self.output, "--shards", str(self.n_shards),
                "--train-size", str(self.train_size), "--seed", str(self.seed),
                "--batch-size", str(self.batch_size), "--concurrency", str(self.concurrency),
                "--actor-cpus", str(self.actor_cpus), "--address", address]  # fmt: skip
        if self.nlist is not None:
            args += ["--nlist", str(self.nlist)]
        return args


def _encode_is_complete(codes: str, config: IndexJobConfig) -> bool:
    from indexer import storage
    from indexer.codes import ENCODE_INFO_FILE, SUMMARY_FILE
    from odh_core.checkpoint import checkpoint_sha256

    opts = config.storage_options
    summary_uri = storage.join(codes, SUMMARY_FILE)
    if not storage.exists(summary_uri, opts):
        return False
    summary = storage.read_json(summary_uri, opts)
    info = storage.read_json(storage.join(codes, ENCODE_INFO_FILE), opts)
    same_input = info.get("image_set") == storage.normalize(config.images)
    same_encoder = info.get("checkpoint_sha256") == checkpoint_sha256(config.checkpoint)
    accounted = summary.get("read") == summary.get("encoded", 0) + summary.get("rejected", 0)
    return bool(same_input and same_encoder and accounted)


def index(config: IndexJobConfig) -> dict[str, Any]:
    """Run encode then build (each resumable); Ray must be initialised by the caller."""
    from indexer import storage
    from indexer.build import build
    from indexer.encode import encode

    codes = storage.join(storage.normalize(config.output), "codes")
    index_dir = storage.join(storage.normalize(config.output), "index")
    record: dict[str, Any] = {"config": asdict(config), "codes": codes, "index": index_dir}
    if _encode_is_complete(codes, config):
        logger.info("index: encode already complete in %s, skipping it", codes)
        record["encode"] = "skipped (complete)"
    else:
        summary = encode(
            config.images, config.checkpoint, codes,
            batch_size=config.batch_size, concurrency=config.concurrency,
            num_cpus=config.actor_cpus, storage_options=config.storage_options,
        )  # fmt: skip
        record["encode"] = summary.to_json()
    manifest = build(
        codes, index_dir, n_shards=config.n_shards, nlist=config.nlist,
        train_size=config.train_size, seed=config.seed, storage_options=config.storage_options,
    )  # fmt: skip
    record["build"] = {
        "generation": manifest.generation,
        "ntotal": sum(s.ntotal for s in manifest.shards),
        "shards": len(manifest.shards),
        "nlist": manifest.nlist,
    }
    return record


def project_runtime_env(extra_env_vars: dict[str, str] | None = None) -> dict[str, Any]:
    """A Ray runtime env that ships this project's code and pins its requirements.

    The pip list is read from ``pyproject.toml`` (the single source of the pins), so a job runs
    with exactly the versions this project is tested with. Clusters whose image already holds
    the project (the Dockerfiles in ``infra/docker``) can pass ``--runtime-env-json '{}'``.
    """
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    env: dict[str, Any] = {
        "working_dir": str(PROJECT_ROOT),
        "excludes": [".venv", ".git", "odh-data", "benchmarks/results", "**/__pycache__"],
        "pip": {"packages": list(pyproject["project"]["dependencies"]), "pip_check": False},
    }
    if extra_env_vars:
        env["env_vars"] = dict(extra_env_vars)
    return env


def submit_index_job(
    config: IndexJobConfig,
    dashboard_address: str,
    *,
    runtime_env: dict[str, Any] | None = None,
    wait: bool = True,
    timeout_s: float = 3600.0,
) -> str:
    """Submit the job to a cluster's Jobs API (``http://head:8265``); returns the submission id.

    With ``wait`` it follows the job to its end and raises ``RuntimeError`` unless it succeeded.
    """
    import time

    from cluster.runtime import use_token_auth_if_available

    use_token_auth_if_available()
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(dashboard_address)
    entrypoint = shlex.join(config.command("auto"))
    env = project_runtime_env() if runtime_env is None else runtime_env
    deadline = time.monotonic() + 120.0
    while True:  # a freshly started head needs a moment before its job agent accepts jobs
        try:
            job_id = client.submit_job(entrypoint=entrypoint, runtime_env=env)
            break
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2.0)
    logger.info("submitted %s: %s", job_id, entrypoint)
    if not wait:
        return job_id
    deadline = time.monotonic() + timeout_s
    terminal = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    while (status := client.get_job_status(job_id)) not in terminal:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {status} after {timeout_s:.0f} s")
        time.sleep(2.0)
    if status != JobStatus.SUCCEEDED:
        logs = client.get_job_logs(job_id)
        raise RuntimeError(f"job {job_id} ended {status}:\n{logs[-4000:]}")
    return job_id
