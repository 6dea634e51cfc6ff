"""Serving layout (split / node placement), build_app argument checks and the Serve config file."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from serving.layout import GroupSpec, group_specs, plan_groups, split_groups

ROOT = Path(__file__).resolve().parents[2]


def _manifest(groups: list[int]) -> SimpleNamespace:
    shards = [SimpleNamespace(shard=s, group=g) for s, g in enumerate(groups)]
    return SimpleNamespace(shards=shards, generation=7)


def test_split_groups_is_balanced_and_contiguous() -> None:
    assert split_groups(5, 2) == [[0, 1, 2], [3, 4]]
    assert split_groups(2, 4) == [[0], [1]]
    with pytest.raises(ValueError, match="groups"):
        split_groups(3, 0)


def test_node_placement_uses_the_manifest_groups() -> None:
    manifest = _manifest([1, 0, 1, 0, 2])
    assert plan_groups(manifest, 99, "node") == [[1, 3], [0, 2], [4]]
    assert plan_groups(manifest, 2, "split") == [[0, 1, 2], [3, 4]]
    specs = group_specs("/idx", manifest, [[1, 3], [0, 2]])
    assert specs[1] == GroupSpec("/idx", (0, 2), 7)
    with pytest.raises(ValueError, match="placement"):
        plan_groups(manifest, 1, "everywhere")


def test_build_app_rejects_unknown_and_bad_args() -> None:
    from serving.app import build_app

    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['colour'\]"):
        build_app({"index": "/x", "colour": "red"})
    with pytest.raises(ValueError, match="'index'"):
        build_app({"groups": 2})
    with pytest.raises(ValueError, match="replicas"):
        build_app({"index": "/x", "replicas": 0})
    with pytest.raises(ValueError, match="searcher_cpus"):
        build_app({"index": "/x", "searcher_cpus": 0})


def _known_args() -> set[str]:
    from serving.config import ServeConfig

    return {f.name for f in dataclasses.fields(ServeConfig)}


def test_serve_config_file_passes_rays_schema() -> None:
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load((ROOT / "cluster" / "serve_config.yaml").read_text())
    ServeDeploySchema.model_validate(config)
    (app,) = config["applications"]
    assert app["import_path"] == "serving.app:build_app"
    assert set(app["args"]) <= _known_args()
    groups = int(app["args"]["groups"])
    names = {d["name"] for d in app["deployments"]}
    assert names == {"Ingress", "QueryEncoder"} | {f"Searcher{g}" for g in range(groups)}
