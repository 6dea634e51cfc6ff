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

import json
import logging
import os
import re
import shlex
import tomllib
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from indexer.build import BuildConfig
from indexer.encode import EncodeConfig
from odh_core.options import option, option_like

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

    images: str = option_like(EncodeConfig, "image_set", flag="--images")
    checkpoint: str = option_like(EncodeConfig, "checkpoint")
    output: str = option(help="job root: <output>/codes, <output>/index")
    n_shards: int = option_like(BuildConfig, "n_shards")
    nlist: int | None = option_like(BuildConfig, "nlist")
    train_size: int = option_like(BuildConfig, "train_size")
    seed: int = option_like(BuildConfig, "seed")
    batch_size: int = option_like(EncodeConfig, "batch_size")
    concurrency: int = option_like(EncodeConfig, "concurrency")
    actor_cpus: float = option_like(EncodeConfig, "num_cpus")
    storage_options: dict[str, Any] | None = option(None, help="fsspec storage options (JSON)")
    storage_options_file: str | None = option(
        None,
        help="JSON file of fsspec storage options (how --submit hands credentials to the job; "
        "relative paths: the job's working dir)",
    )

    def __hash__(self) -> int:  # storage_options (a dict) stays out of the hash
        return hash(tuple(v for k, v in asdict(self).items() if k != "storage_options"))

    def resolved_storage_options(self) -> dict[str, Any] | None:
        """``storage_options``, else the content of ``storage_options_file``."""
        if self.storage_options is not None or not self.storage_options_file:
            return self.storage_options
        with open(self.storage_options_file, encoding="utf-8") as fh:
            loaded = json.load(fh)
        if not isinstance(loaded, dict):
            raise ValueError(f"storage_options_file: {self.storage_options_file} is not an object")
        return loaded

    def encode_config(self, codes: str) -> EncodeConfig:
        """The encode stage of this job, writing to ``codes``."""
        return EncodeConfig(
            image_set=self.images,
            checkpoint=self.checkpoint,
            output=codes,
            batch_size=self.batch_size,
            concurrency=self.concurrency,
            num_cpus=self.actor_cpus,
        )

    def build_config(self) -> BuildConfig:
        """The build stage of this job."""
        return BuildConfig(
            n_shards=self.n_shards, nlist=self.nlist, train_size=self.train_size, seed=self.seed
        )

    def __post_init__(self) -> None:
        for name in ("images", "checkpoint", "output"):
            if not getattr(self, name):
                raise ValueError(f"IndexJobConfig.{name} is required")
        self.build_config()  # validates the build options, naming the field
        self.encode_config(self.output)  # ... and the encode options

    def command(self, address: str = "auto") -> list[str]:
        """The `odh index` command line that runs this job on a cluster."""
        from cluster.cli_config import config_argv

        # storage options never go on the command line (it is logged): --submit ships them as a
        # file in the job's working dir (submit_index_job) and names the file here
        flags = config_argv(self, exclude=("storage_options",))
        return ["odh", "index", *flags, "--address", address]


def _encode_is_complete(codes: str, config: IndexJobConfig) -> bool:
    from indexer import storage
    from indexer.codes import ENCODE_INFO_FILE, SUMMARY_FILE
    from odh_core.checkpoint import checkpoint_sha256

    opts = config.resolved_storage_options()
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

    opts = config.resolved_storage_options()
    if opts is not None and config.storage_options is None:
        config = replace(config, storage_options=opts, storage_options_file=None)
    codes = storage.join(storage.normalize(config.output), "codes")
    index_dir = storage.join(storage.normalize(config.output), "index")
    record: dict[str, Any] = {
        "config": redact(asdict(config)),
        "codes": codes,
        "index": index_dir,
    }
    if _encode_is_complete(codes, config):
        logger.info("index: encode already complete in %s, skipping it", codes)
        record["encode"] = "skipped (complete)"
    else:
        summary = encode(config.encode_config(codes), storage_options=config.storage_options)
        record["encode"] = summary.to_json()
    manifest = build(
        codes, index_dir, config=config.build_config(), storage_options=config.storage_options
    )
    record["build"] = {
        "generation": manifest.generation,
        "ntotal": sum(s.ntotal for s in manifest.shards),
        "shards": len(manifest.shards),
        "nlist": manifest.nlist,
    }
    return record


#: Keys of storage options (and other configs) whose values are credentials.
_SECRET_KEY = re.compile(r"key|secret|token|password|passwd|credential|session|auth", re.I)
REDACTED = "***"


def redact(value: Any) -> Any:
    """``value`` with every credential-like entry (a key naming a key, secret, token, password,
    credential, session or auth) replaced by ``***``, recursively: what is printed or logged."""
    if isinstance(value, dict):
        return {
            k: REDACTED
            if isinstance(k, str) and _SECRET_KEY.search(k) and v is not None
            else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    return value


#: Folder (in the project root, git-ignored) of the storage-options files --submit ships.
SUBMIT_SECRETS_DIR = ".odh-submit"


def _ship_storage_options(
    config: IndexJobConfig, env: dict[str, Any]
) -> tuple[IndexJobConfig, str | None]:
    """Write the job's storage options to a 0600 file inside the runtime env's working dir (it
    travels in the uploaded package, never on the logged command line or in env vars); returns
    the config naming that file and the local file to delete once the job was submitted."""
    opts = config.resolved_storage_options()
    if opts is None:
        return config, None
    working_dir = env.get("working_dir")
    if not working_dir or not os.path.isdir(str(working_dir)):
        raise ValueError(
            "storage_options with --submit need a runtime env with a local working_dir to ship "
            "them in (the default); with --runtime-env-json without one, give the cluster its "
            "credentials in its own environment instead"
        )
    rel = os.path.join(SUBMIT_SECRETS_DIR, f"storage-{uuid.uuid4().hex}.json")
    path = os.path.join(str(working_dir), rel)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(opts, fh)
    return replace(config, storage_options=None, storage_options_file=rel), path


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
    env = project_runtime_env() if runtime_env is None else runtime_env
    config, shipped = _ship_storage_options(config, env)
    entrypoint = shlex.join(config.command("auto"))
    deadline = time.monotonic() + 120.0
    try:
        while True:  # a freshly started head needs a moment before its job agent accepts jobs
            try:
                job_id = client.submit_job(entrypoint=entrypoint, runtime_env=env)
                break
            except RuntimeError as exc:
                if "No available agent" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(2.0)
    finally:
        if shipped:  # uploaded with the working dir at submission: no copy stays here
            os.unlink(shipped)
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
