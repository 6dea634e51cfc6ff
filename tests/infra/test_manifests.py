"""Static checks of the deployment files under infra/: KubeRay manifests, the Ray cluster-launcher
YAML, Dockerfiles, and that no credential is ever written into them.

Nothing here needs a Kubernetes cluster or Docker: the checks follow the KubeRay ray.io/v1 CRD
fields, Ray Serve's config schema, Ray's cluster-launcher schema and the `odh` argument parser.
"""

from __future__ import annotations

import dataclasses
import random
import re
import shlex
import string
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
KUBERAY = INFRA / "kuberay"
KUBERAY_FILES = ("raycluster.yaml", "rayjob.yaml", "rayservice.yaml")
LAUNCHER = INFRA / "ray" / "cluster-launcher.yaml"
SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def _yaml_files() -> list[Path]:
    return sorted(p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml"))


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _cluster_spec(doc: dict) -> dict:
    """The RayClusterSpec inside a RayCluster, RayJob or RayService."""
    kind = doc["kind"]
    if kind == "RayCluster":
        return doc["spec"]
    if kind == "RayJob":
        return doc["spec"]["rayClusterSpec"]
    if kind == "RayService":
        return doc["spec"]["rayClusterConfig"]
    raise AssertionError(f"unexpected kind {kind!r}")


def _pod_templates(spec: dict) -> list[tuple[str, dict]]:
    out = [("head", spec["headGroupSpec"]["template"])]
    out += [(g["groupName"], g["template"]) for g in spec.get("workerGroupSpecs", [])]
    return out


def _walk(node: Any):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _serve_config() -> dict:
    return yaml.safe_load(_load(KUBERAY / "rayservice.yaml")["spec"]["serveConfigV2"])


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_yaml_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} holds no YAML document"
    assert all(isinstance(d, dict) for d in docs), f"{path}: every document must be a mapping"


def test_the_expected_files_exist() -> None:
    expected = [
        "docker/Dockerfile",
        "docker/Dockerfile.cuda",
        *(f"kuberay/{name}" for name in KUBERAY_FILES),
        "prometheus/prometheus.yml",
        "prometheus/alerts.yml",
        "grafana/odh-dashboard.json",
        "ray/cluster-launcher.yaml",
    ]
    missing = [name for name in expected if not (INFRA / name).is_file()]
    assert not missing, f"missing under infra/: {missing}"


@pytest.mark.parametrize("name", KUBERAY_FILES)
def test_kuberay_manifest_has_required_fields(name: str) -> None:
    doc = _load(KUBERAY / name)
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] in ("RayCluster", "RayJob", "RayService")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    spec = _cluster_spec(doc)
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert all(isinstance(v, str) for v in head["rayStartParams"].values()), (
        "rayStartParams values must be strings"
    )
    groups = spec["workerGroupSpecs"]
    assert groups, f"{name}: no worker group"
    names = [g["groupName"] for g in groups]
    assert len(set(names)) == len(names), f"{name}: duplicate groupName in {names}"
    for group in groups:
        for field in ("groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams"):
            assert field in group, f"{name}: worker group {group.get('groupName')} lacks {field}"
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], (
            f"{name}: group {group['groupName']} needs minReplicas <= replicas <= maxReplicas"
        )
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())
    for group_name, template in _pod_templates(spec):
        containers = template["spec"]["containers"]
        assert containers, f"{name}/{group_name}: no container"
        ray_container = containers[0]
        assert ray_container["image"], f"{name}/{group_name}: container without image"
        resources = ray_container["resources"]
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[part]), (
                f"{name}/{group_name}: resources.{part} needs cpu and memory"
            )
        ports = {p["containerPort"] for p in ray_container.get("ports", [])}
        assert 8080 in ports, f"{name}/{group_name}: metrics export port 8080 not exposed"
        assert head["rayStartParams"].get("metrics-export-port") == "8080"


def test_raycluster_has_cpu_gpu_and_searcher_groups() -> None:
    spec = _cluster_spec(_load(KUBERAY / "raycluster.yaml"))
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert {"cpu", "gpu", "searcher"} <= set(groups)
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]
    assert str(gpu["limits"]["nvidia.com/gpu"]) == "1"
    cpu = groups["cpu"]["template"]["spec"]["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in cpu["limits"]
    custom = groups["searcher"]["rayStartParams"]["resources"]
    # KubeRay's format: a quoted JSON string inside the string value.
    assert yaml.safe_load(yaml.safe_load(custom)) == {"searcher": 1}
    assert spec["enableInTreeAutoscaling"] is True


@pytest.mark.parametrize("name", KUBERAY_FILES)
def test_s3_credentials_come_from_a_secret_reference(name: str) -> None:
    doc = _load(KUBERAY / name)
    for group_name, template in _pod_templates(_cluster_spec(doc)):
        env = {e["name"]: e for e in template["spec"]["containers"][0].get("env", [])}
        for var in SECRET_ENV:
            assert var in env, f"{name}/{group_name}: {var} not set"
            ref = env[var]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "odh-s3" and ref["key"] == var
            assert "value" not in env[var]


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayservice.yaml"])
def test_serve_runs_behind_the_same_proxy_as_odh_serve(name: str) -> None:
    """The pods that run Serve select the proxy mode `odh serve` uses by default (HttpConfig),
    in every container: Serve reads the variable in each Ray process, head and workers."""
    from serving.config import PROXY_MODES, HttpConfig

    wanted = PROXY_MODES[HttpConfig().proxy]
    others = {k for env in PROXY_MODES.values() for k in env} - set(wanted)
    for group_name, template in _pod_templates(_cluster_spec(_load(KUBERAY / name))):
        env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
        for var, value in wanted.items():
            assert env.get(var) == value, f"{name}/{group_name}: {var} must be {value!r}"
        assert not others & set(env), f"{name}/{group_name}: another proxy mode set"


SECRET_PATTERNS = (
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*[\"']?[A-Za-z0-9/+]{30,}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
)


@pytest.mark.parametrize(
    "path",
    sorted(p for p in INFRA.rglob("*") if p.is_file() and "__pycache__" not in p.parts),
    ids=lambda p: str(p.relative_to(INFRA)),
)
def test_no_literal_secret_in_infra(path: Path) -> None:
    text = path.read_text(errors="replace")
    for pattern in SECRET_PATTERNS:
        match = pattern.search(text)
        assert match is None, f"{path}: looks like a credential: {match.group(0)[:12]}..."
    if path.suffix not in (".yaml", ".yml"):
        return
    for doc in yaml.safe_load_all(text):
        assert not (isinstance(doc, dict) and doc.get("kind") == "Secret"), (
            f"{path}: Secrets are created by the operator (kubectl create secret), never committed"
        )
        for node in _walk(doc):
            var = str(node.get("name", ""))
            if re.search(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY", var) and "value" in node:
                raise AssertionError(f"{path}: env {var} has a literal value; use secretKeyRef")


def test_secret_patterns_catch_a_planted_key() -> None:
    rng = random.Random(0)
    alphabet = string.ascii_letters + string.digits + "/+"
    key_id = "AKIA" + "".join(rng.choice(string.ascii_uppercase) for _ in range(16))
    secret = "".join(rng.choice(alphabet) for _ in range(40))
    assert SECRET_PATTERNS[0].search(f"id: {key_id}")
    assert SECRET_PATTERNS[1].search(f"aws_secret_access_key = {secret}")
    assert SECRET_PATTERNS[1].search(f'AWS_SECRET_ACCESS_KEY: "{secret}"')
    assert not any(p.search("AWS_SECRET_ACCESS_KEY: {secretKeyRef: x}") for p in SECRET_PATTERNS)


def test_rayjob_runs_the_index_job_on_s3() -> None:
    from cluster.cli import parse_command
    from cluster.index_job import IndexJobConfig
    from cluster.runtime import RuntimeConfig

    spec = _load(KUBERAY / "rayjob.yaml")["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["rayClusterSpec"]["workerGroupSpecs"]
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert isinstance(runtime_env, dict) and runtime_env
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["odh", "index"], "the RayJob runs the resumable `odh index` job"
    _, configs, _ = parse_command(argv[1:])  # exits (SystemExit) on an unknown flag
    by_type = {type(c): c for c in configs}
    runtime = by_type[RuntimeConfig]
    assert runtime.address == "auto", "the job must run on the cluster (--address auto)"
    job = by_type[IndexJobConfig]
    for name in ("images", "checkpoint", "output"):
        assert getattr(job, name).startswith("s3://"), name


def _build_app_known_args() -> set[str]:
    """What ``build_app`` accepts: the fields of its typed arguments, ``ServeConfig``."""
    from serving.config import ServeConfig

    return {f.name for f in dataclasses.fields(ServeConfig)}


def test_rayservice_serve_config_runs_build_app() -> None:
    from ray.serve.schema import ServeDeploySchema

    config = _serve_config()
    ServeDeploySchema.model_validate(config)  # Ray Serve's own schema for `serve deploy`
    (app,) = config["applications"]
    assert app["import_path"] == "serving.app:build_app"
    assert app["args"]["index"].startswith("s3://")
    unknown = set(app["args"]) - _build_app_known_args()
    assert not unknown, f"build_app does not accept {sorted(unknown)}"
    groups = int(app["args"].get("groups", 1))
    expected = {"Ingress", "QueryEncoder"} | {f"Searcher{g}" for g in range(groups)}
    names = {d["name"] for d in app["deployments"]}
    assert names <= expected, f"unknown deployments {sorted(names - expected)}"
    assert {f"Searcher{g}" for g in range(groups)} <= names


def test_rayservice_searchers_land_on_the_searcher_group() -> None:
    doc = _load(KUBERAY / "rayservice.yaml")
    spec = _cluster_spec(doc)
    advertised = {
        g["groupName"]: yaml.safe_load(yaml.safe_load(g["rayStartParams"]["resources"]))
        for g in spec["workerGroupSpecs"]
        if "resources" in g["rayStartParams"]
    }
    assert advertised.get("searcher", {}).get("searcher", 0) >= 1
    searchers = [
        d
        for d in _serve_config()["applications"][0]["deployments"]
        if d["name"].startswith("Searcher")
    ]
    for deployment in searchers:
        assert deployment["ray_actor_options"]["resources"] == {"searcher": 1}
    group = next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "searcher")
    replicas = sum(d.get("num_replicas", 1) for d in searchers)
    assert group["maxReplicas"] >= replicas, "searcher group cannot hold every Searcher replica"


def test_rayservice_has_probes_and_autoscaling_bounds() -> None:
    spec = _cluster_spec(_load(KUBERAY / "rayservice.yaml"))
    for group_name, template in _pod_templates(spec):
        container = template["spec"]["containers"][0]
        for probe in ("readinessProbe", "livenessProbe"):
            command = " ".join(container[probe]["exec"]["command"])
            assert "healthz" in command, f"{group_name}: {probe} checks no health endpoint"
    for group in spec["workerGroupSpecs"]:
        assert group["maxReplicas"] > group["minReplicas"] >= 1
    for deployment in _serve_config()["applications"][0]["deployments"]:
        scaling = deployment.get("autoscaling_config")
        if scaling:
            assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"]


def test_cluster_launcher_has_required_keys() -> None:
    config = _load(LAUNCHER)
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type"):
        assert key in config, f"cluster-launcher.yaml lacks {key}"
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert {"cpu", "gpu"} <= set(types)
    assert types["gpu"]["node_config"]["InstanceType"].startswith(("g", "p"))
    assert any("pip install" in c for c in config["setup_commands"])
    assert any("--head" in c for c in config["head_start_ray_commands"])
    assert any("--address" in c for c in config["worker_start_ray_commands"])
    all_starts = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert all_starts.count("--metrics-export-port=8080") == 2


def test_cluster_launcher_passes_rays_schema() -> None:
    try:
        from ray.autoscaler._private.util import prepare_config, validate_config
    except ImportError as exc:  # private API: moved in another Ray version
        pytest.skip(f"Ray's cluster-launcher validator is not importable: {exc}")
    validate_config(prepare_config(_load(LAUNCHER)))


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles_install_the_project_as_non_root(name: str) -> None:
    text = (INFRA / "docker" / name).read_text()
    instructions = [line.split()[0] for line in text.splitlines() if line and line[0].isalpha()]
    assert instructions[0] in ("FROM", "ARG") and "FROM" in instructions
    assert re.search(r"pip install \.(\s|$)", text), f"{name}: must `pip install .`"
    assert "torch==2.13.0" in text
    assert "WORKDIR /app" in text
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and users[-1] != "root", f"{name}: the final USER must not be root"
    if name == "Dockerfile":
        assert re.search(r"^FROM python:3\.11-slim", text, flags=re.M)
        assert "whl/cpu" in text
    else:
        assert "cu" in re.search(r"TORCH_INDEX_URL=(\S+)", text).group(1)
        assert "faiss" in text.lower()
