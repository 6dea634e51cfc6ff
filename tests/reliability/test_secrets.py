"""No leaked secrets: the admin token never reaches Ray's logs or env vars, credentials are
redacted in printed configs and shipped (not printed) with --submit, the training state loads
without unpickling, remote errors are shortened, and the embedded cluster stays on loopback and
leaves no process behind."""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from _limits_index import SmallIndex, build_small_index


def _session_dir() -> Path:
    import ray

    return Path(ray._private.worker._global_node.get_session_dir_path())


def test_admin_token_never_reaches_rays_files(
    ray_local: None, tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int]
) -> None:
    from serving.app import start_server, stop_server

    small: SmallIndex = build_small_index(tmp_path_factory.mktemp("secrets"))
    token = "odh-" + secrets.token_hex(16)
    url = start_server(small.path, port=free_port(), admin_token=token, app_name="odh-secrets")
    try:
        auth = {"Authorization": f"Bearer {token}"}
        r = httpx.post(f"{url}/v1/admin/reload", json={}, headers=auth, timeout=120)
        assert r.status_code == 200, r.text  # the ingress read the token
        assert httpx.post(f"{url}/v1/admin/reload", json={}, timeout=60).status_code == 401
        from ray import serve

        status = serve.status().applications["odh-secrets"]
        assert token not in json.dumps(str(status))
    finally:
        stop_server("odh-secrets")
    needle = token.encode()
    leaks = []
    for path in _session_dir().rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    leaks.append(str(path))
            except OSError:
                continue
    assert leaks == [], f"admin token found in {leaks}"


def test_token_file_is_private() -> None:
    from serving.app import write_token_file

    path = write_token_file("t0ken")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600 and stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert Path(path).read_text() == "t0ken"


def test_storage_credentials_are_redacted_and_shipped_by_file(tmp_path: Path) -> None:
    from cluster.index_job import REDACTED, IndexJobConfig, _ship_storage_options, redact

    opts = {
        "key": "AKIAEXAMPLE",
        "secret": "s3cr3t",
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "aws_session_token": "tok"},
        "anon": False,
    }
    cfg = IndexJobConfig(
        images="s3://b/images", checkpoint="/ck", output="s3://b/job", storage_options=opts
    )
    shown = redact({"config": {"storage_options": opts}})["config"]["storage_options"]
    assert shown["key"] == shown["secret"] == REDACTED
    assert shown["client_kwargs"] == {
        "endpoint_url": "http://127.0.0.1:9000",
        "aws_session_token": REDACTED,
    }
    assert shown["anon"] is False
    text = " ".join(cfg.command())
    assert "s3cr3t" not in text and "AKIA" not in text
    # --submit: a 0600 file inside the shipped working dir, named (not inlined) on the command
    shipped_cfg, local = _ship_storage_options(cfg, {"working_dir": str(tmp_path)})
    assert local is not None and stat.S_IMODE(os.stat(local).st_mode) == 0o600
    assert json.loads(Path(local).read_text()) == opts
    argv = shipped_cfg.command()
    assert "--storage-options-file" in argv and "s3cr3t" not in " ".join(argv)
    rel = argv[argv.index("--storage-options-file") + 1]
    assert Path(tmp_path, rel).resolve() == Path(local).resolve()
    cwd = os.getcwd()
    try:  # the job runs in its working dir, where the relative path resolves
        os.chdir(tmp_path)
        assert shipped_cfg.resolved_storage_options() == opts
    finally:
        os.chdir(cwd)
    with pytest.raises(ValueError, match="working_dir"):
        _ship_storage_options(cfg, {})


def test_train_state_loads_without_unpickling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from odh_core.train_state import STATE_JSON, load_train_state, save_train_state

    state = {"global_epoch": 3, "fp": {"w": torch.arange(4.0)}, "rng": torch.get_rng_state()}
    save_train_state(state, str(tmp_path))
    assert not list(tmp_path.glob("*.pt"))
    json.loads((tmp_path / STATE_JSON).read_text())  # plain JSON

    def no_pickle(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load called")

    monkeypatch.setattr(torch, "load", no_pickle)
    back = load_train_state(str(tmp_path))
    assert back["global_epoch"] == 3 and torch.equal(back["fp"]["w"], torch.arange(4.0))
    assert torch.equal(back["rng"], state["rng"])


def test_remote_errors_are_shortened() -> None:
    from cluster.commands.serving import deploy_cause
    from serving.errors import short_reason

    remote = (
        "reload of /x failed (still serving generation 1): ray::ServeReplica:odh:Searcher0."
        "handle_request() (pid=4242, ip=10.1.2.3, actor_id=abc)\n"
        '  File "/srv/odh/serving/searcher.py", line 10, in prepare\n'
        * 30
        + "ValueError: shard 3: no such file"
    )
    short = short_reason(remote)
    assert len(short) <= 300 and "\n" not in short
    assert "pid=" not in short and "10.1.2.3" not in short
    assert short.startswith("reload of /x failed") and short.endswith("no such file")
    deploy = RuntimeError(
        "Deploying application odh failed: Traceback (most recent call last):\n"
        '  File "/x/replica.py", line 5, in init\n'
        "odh_core.checkpoint.CheckpointError: sha256 mismatch for /ck/model.safetensors\n"
    )
    assert deploy_cause(deploy).startswith("odh_core.checkpoint.CheckpointError: sha256 mismatch")


def test_embedded_cluster_is_loopback_and_leaves_no_process(tmp_path: Path) -> None:
    """In a fresh process: the embedded cluster's node address is 127.0.0.1, and every process
    it started is gone once ``ray_runtime`` exits."""
    script = (
        "import json, ray, psutil\n"
        "from cluster.runtime import RuntimeConfig, ray_runtime\n"
        "with ray_runtime(RuntimeConfig(num_cpus=1)):\n"
        "    ip = ray.util.get_node_ip_address()\n"
        "    pids = [p.pid for p in psutil.Process().children(recursive=True)]\n"
        "alive = [p for p in pids if psutil.pid_exists(p) and "
        "psutil.Process(p).status() != psutil.STATUS_ZOMBIE]\n"
        "print(json.dumps({'ip': ip, 'pids': pids, 'alive': alive}))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts["ip"] == "127.0.0.1"
    assert facts["pids"], "the embedded cluster started no processes?"
    assert facts["alive"] == []
