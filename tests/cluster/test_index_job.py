"""`odh index`: encode + build as one job; a rerun skips a complete encode and resumes the build."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from cluster.cli import parse_command
from cluster.index_job import IndexJobConfig, index, project_runtime_env


def test_runtime_env_pins_the_project_requirements() -> None:
    env = project_runtime_env({"ODH_X": "1"})
    packages = env["pip"]["packages"]
    assert "torch==2.13.0" in packages
    assert any(p.startswith("ray[") and "==" in p for p in packages)
    assert Path(env["working_dir"], "pyproject.toml").is_file()
    assert ".venv" in env["excludes"] and env["env_vars"] == {"ODH_X": "1"}


def test_job_command_is_a_valid_odh_index_command_line() -> None:
    config = IndexJobConfig(images="s3://b/images", checkpoint="s3://b/enc", output="s3://b/job",
                            n_shards=8, nlist=256)  # fmt: skip
    argv = config.command("auto")
    assert argv[:2] == ["odh", "index"]
    _, (job, submit, runtime), _ = parse_command(argv[1:])
    assert job == config and submit.submit is None and runtime.address == "auto"
    assert shlex.split(shlex.join(argv)) == argv


def test_config_rejects_missing_paths() -> None:
    with pytest.raises(ValueError, match="images"):
        IndexJobConfig(images="", checkpoint="c", output="o")


@pytest.mark.e2e
def test_rerun_skips_finished_encode_and_keeps_the_index(
    synthetic_set: Path, tiny_checkpoint: str, tmp_path: Path, ray_local: None
) -> None:
    config = IndexJobConfig(images=str(synthetic_set), checkpoint=tiny_checkpoint,
                            output=str(tmp_path / "job"), n_shards=2, nlist=4,
                            batch_size=16, actor_cpus=0.5)  # fmt: skip
    first = index(config)
    assert first["encode"]["encoded"] == 48 and first["build"]["ntotal"] == 48
    summary = tmp_path / "job" / "codes" / "_summary.json"
    mtime = summary.stat().st_mtime_ns
    second = index(config)
    assert second["encode"] == "skipped (complete)"
    assert summary.stat().st_mtime_ns == mtime
    assert second["build"] == first["build"]
