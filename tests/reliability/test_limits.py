"""Bounded work over HTTP: body limit, per-image and per-request pixel limits scaled to the
encoder's input side, the search cost budget, image formats, clear short errors."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from _limits_index import NLIST, SmallIndex, build_small_index, png

TOKEN = "limits-test-token"


@pytest.fixture(scope="module")
def small(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> SmallIndex:
    return build_small_index(tmp_path_factory.mktemp("limits"))


@pytest.fixture(scope="module")
def server(
    small: SmallIndex, tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int]
) -> Iterator[str]:
    from serving.app import start_server, stop_server
    from serving.config import ServeConfig

    token_file = tmp_path_factory.mktemp("secret") / "token"
    token_file.write_text(TOKEN)
    os.chmod(token_file, 0o600)
    cfg = ServeConfig(
        index=small.path,
        max_body_mb=0.25,  # 262144 bytes
        image_side_factor=2.0,  # 28-px encoder: at most 56² = 3136 pixels per image
        max_request_mpx=0.008,  # 8000 pixels per request
        max_search_cost=1000,
        max_inflight_cost=4000,
        admin_token_file=str(token_file),
    )
    url = start_server(cfg, port=free_port(), app_name="odh-limits")
    try:
        yield url
    finally:
        stop_server("odh-limits")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _post(server: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server}/v1/search", json=body, timeout=60)


def test_limits_are_reported_in_stats(server: str) -> None:
    limits = httpx.get(f"{server}/v1/stats", timeout=60).json()["limits"]
    assert limits["max_image_pixels"] == 56 * 56
    assert limits["max_request_pixels"] == 8000
    assert limits["max_body_bytes"] == 262144
    assert limits["max_search_cost"] == 1000


def test_body_over_the_limit_is_413_before_parsing(server: str) -> None:
    big = b'{"codes": ["' + b"a" * 300_000 + b'"]}'
    r = httpx.post(
        f"{server}/v1/search",
        content=big,
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 413 and "max_body_mb" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        yield b'{"codes": ["'
        for _ in range(40):
            yield b"b" * 10_000
        yield b'"]}'

    r = httpx.post(
        f"{server}/v1/search",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 413 and "262144 bytes" in r.json()["detail"]
    # not JSON at all but small: still the JSON error, not the body limit
    r = httpx.post(
        f"{server}/v1/search",
        content=b"{",
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("malformed JSON")


def test_image_pixels_per_image_and_per_request(server: str) -> None:
    ok = _post(server, {"images": [_b64(png(28))], "k": 3})
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["results"][0]) == 3
    big = _post(server, {"images": [_b64(png(28)), _b64(png(100, 60))], "k": 3})
    assert big.status_code == 413
    detail = big.json()["detail"]
    assert detail.startswith("images[1]: 100x60 = 6000 pixels") and "3136" in detail
    # three 50x50 images: each under 3136, together 7500 ≤ 8000; four pass the budget
    three = _post(server, {"images": [_b64(png(50, seed=i)) for i in range(3)], "k": 2})
    assert three.status_code == 200, three.text
    four = _post(server, {"images": [_b64(png(50, seed=i)) for i in range(4)], "k": 2})
    assert four.status_code == 413
    assert "max_request_mpx" in four.json()["detail"] and "8000" in four.json()["detail"]


def test_eps_and_other_formats_are_refused_before_any_decoder(server: str) -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n0 0 moveto showpage\n"
    r = _post(server, {"images": [_b64(eps)]})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("images[0]:") and "accepted formats" in r.json()["detail"]


def test_eps_never_reaches_ghostscript(monkeypatch: pytest.MonkeyPatch) -> None:
    """In process: with Pillow's EPS plug-in booby-trapped, decoding an EPS query fails cleanly
    without calling it (the allowlist stops it before any plug-in looks at the bytes)."""
    from PIL import EpsImagePlugin

    from odh_core.images import ImageDecodeError, decode_image, probe_image

    called: list[str] = []

    def trap(*args: object, **kwargs: object) -> None:
        called.append("eps")
        raise AssertionError("the EPS plug-in was reached")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", trap)
    monkeypatch.setattr(EpsImagePlugin, "_accept", trap)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nshowpage\n"
    with pytest.raises(ImageDecodeError, match="accepted formats"):
        decode_image(eps, image_size=28, channels=1)
    with pytest.raises(ImageDecodeError, match="accepted formats"):
        probe_image(eps)
    assert called == []
    assert probe_image(png(30, 20)) == ("PNG", 30, 20)


def test_search_cost_budget(server: str, small: SmallIndex) -> None:
    code = small.codes[0].tobytes().hex()
    # 2 queries × k 100 × nprobe 4 (default: nlist) = 800 ≤ 1000
    ok = _post(server, {"codes": [code, code], "k": 100})
    assert ok.status_code == 200
    assert len(ok.json()["results"][0]) == len(small.ids)  # k > ntotal: everything
    # 2 × 200 × 4 = 1600 > 1000
    r = _post(server, {"codes": [code, code], "k": 200})
    assert r.status_code == 413
    assert "1600" in r.json()["detail"] and "max_search_cost" in r.json()["detail"]
    # nprobe 1 brings it under: 2 × 200 × 1 = 400
    assert _post(server, {"codes": [code, code], "k": 200, "nprobe": 1}).status_code == 200
    # nprobe above nlist counts as nlist (what the searcher probes): 2 × 100 × 4
    assert _post(server, {"codes": [code, code], "k": 100, "nprobe": 10**6}).status_code == 200
    assert NLIST == 4


def test_non_hex_code_says_so(server: str) -> None:
    r = _post(server, {"codes": ["zz" * 4]})
    assert r.status_code == 422
    assert "not hexadecimal" in r.json()["detail"] and "odd" not in r.json()["detail"]
    odd = _post(server, {"codes": ["abc"]})
    assert odd.status_code == 422 and "odd length" in odd.json()["detail"]


def test_reload_errors_are_short(server: str, tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{server}/v1/admin/reload"
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "manifest.json").write_text('{"format": "nonsense"')
    for target in (str(tmp_path / "missing"), str(bad)):
        r = httpx.post(url, json={"index": target}, headers=auth, timeout=120)
        assert 400 <= r.status_code < 600 and r.status_code != 200
        detail = r.json()["detail"]
        assert len(detail) <= 400 and "\n" not in detail and "Traceback" not in detail
        assert "pid=" not in detail


def test_failed_deploy_names_the_cause(server: str, small: SmallIndex, tmp_path: Path) -> None:
    """A corrupt encoder checkpoint: the deploy error carries the replica's exception (the sha256
    mismatch), not only Serve's "failed to update the deployments"."""
    import shutil

    from ray import serve

    from cluster.commands.serving import deploy_cause
    from serving.app import start_server

    bad = tmp_path / "ckpt"
    shutil.copytree(small.checkpoint, bad)
    model = bad / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    try:
        with pytest.raises(RuntimeError) as info:
            start_server(small.path, checkpoint=str(bad), app_name="odh-bad", route_prefix="/bad")
    finally:
        serve.delete("odh-bad")  # the module's server keeps running
    cause = deploy_cause(info.value)
    assert "sha256 mismatch" in cause and "model.safetensors" in cause
    assert httpx.get(f"{server}/v1/healthz", timeout=60).status_code == 200
