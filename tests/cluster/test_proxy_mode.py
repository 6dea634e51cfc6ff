"""``odh serve --proxy``: the Serve entry point chosen by environment before Ray starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cluster.runtime import proxy_env
from serving.config import PROXY_MODES, HttpConfig


def test_http_config_defaults_to_haproxy_and_names_a_bad_proxy() -> None:
    assert HttpConfig().proxy == "haproxy"
    with pytest.raises(ValueError, match=r"HttpConfig.proxy must be one of \['default'"):
        HttpConfig(proxy="nginx")


def test_proxy_env_sets_the_variables_serve_reads() -> None:
    assert proxy_env("default") == {}
    assert proxy_env("throughput") == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
    for name, env in PROXY_MODES.items():
        assert env.items() <= proxy_env(name).items()
    with pytest.raises(ValueError, match="proxy must be one of"):
        proxy_env("nginx")


def test_two_haproxy_servers_get_their_own_files_and_ports() -> None:
    a, b = proxy_env("haproxy"), proxy_env("haproxy")
    assert a["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    base = Path(a["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"])
    assert base.is_dir() and base != Path(b["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"])
    for key in ("CONFIG_FILE_LOC", "SOCKET_PATH", "SERVER_STATE_FILE"):
        assert Path(a[f"RAY_SERVE_HAPROXY_{key}"]).parent == base
    ports = {int(e[f"RAY_SERVE_HAPROXY_{k}_PORT"]) for e in (a, b) for k in ("STATS", "METRICS")}
    assert len(ports) >= 3  # 8404/9101 (Ray's defaults) would collide
    for port in ports:
        # outside Ray's worker ports and the ephemeral range Ray's processes bind at random
        assert 20000 <= port < 32768
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # still free


def test_the_demo_ends_with_how_to_serve_and_the_page_url() -> None:
    from cluster.demo import _serve_hint

    text = "\n".join(_serve_hint(Path("/data/odh/index"), 8123))
    assert "odh serve --index /data/odh/index --port 8123" in text
    assert "open http://127.0.0.1:8123/" in text
