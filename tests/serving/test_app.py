"""The Serve application over HTTP: exact top-k by codes / ids / images, and every bad input → 4xx.

One Serve start per module (it costs ~10–20 s here). The index is built with the real
``indexer.build.build`` from codes made by a real (untrained, seeded) encoder checkpoint.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from serving.client import ODHClient, ODHClientError

N_BITS = 32
N_DB = 180
N_SHARDS = 3
NLIST = 6
GROUPS = 2
TOKEN = "test-admin-token"


def _png(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _images(rng: np.random.Generator, n: int) -> list[bytes]:
    """Class-structured 28×28 grayscale PNGs (4 prototypes + noise)."""
    protos = rng.integers(0, 256, size=(4, 28, 28))
    out = []
    for i in range(n):
        noise = rng.normal(0, 40, size=(28, 28))
        out.append(_png(np.clip(protos[i % 4] + noise, 0, 255).astype(np.uint8)))
    return out


def _png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A PNG whose header claims ``width × height`` pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _brute_force(db_codes: np.ndarray, db_ids: np.ndarray, queries: np.ndarray, k: int):
    """Top-k by (Hamming distance, id)."""
    from odh_core.packing import hamming_distances

    dist = hamming_distances(queries, db_codes)
    out = []
    for row in dist:
        order = np.lexsort((db_ids, row))[:k]
        out.append(([int(row[j]) for j in order], [int(db_ids[j]) for j in order]))
    return out


class Index:
    def __init__(self, path: str, images: list[bytes], ids: np.ndarray, codes: np.ndarray) -> None:
        self.path, self.images, self.ids, self.codes = path, images, ids, codes


@pytest.fixture(scope="module")
def index(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> Index:
    import torch

    from indexer.build import build
    from indexer.codes import write_code_set
    from odh_core.checkpoint import save_checkpoint
    from odh_core.encoder import Encoder
    from odh_core.models import create_encoder

    root: Path = tmp_path_factory.mktemp("serving")
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = create_encoder("resnet_small", n_bits=N_BITS, in_channels=1)
    ckpt = str(root / "ckpt")
    save_checkpoint(model, _encoder_config(), ckpt)
    encoder = Encoder.from_checkpoint(ckpt, num_threads=1)
    images = _images(rng, N_DB)
    ids = (np.arange(N_DB, dtype=np.int64) * 7 + 3)[rng.permutation(N_DB)]
    codes = np.asarray(encoder.encode_images(images), dtype=np.uint8)

    codes_dir = str(root / "codes")
    write_code_set(
        codes_dir, ids, codes, N_BITS, keys=[f"img-{i}" for i in ids],
        labels=[[int(i % 4)] for i in range(N_DB)], splits=["database"] * N_DB,
        encode_info={"checkpoint": ckpt},
    )  # fmt: skip
    out = str(root / "index")
    build(codes_dir, out, n_shards=N_SHARDS, nlist=NLIST, seed=0)
    return Index(out, images, ids, codes)


def _encoder_config():
    """An EncoderConfig for the untrained test model (fields per odh_core.checkpoint)."""
    from odh_core.checkpoint import EncoderConfig

    return EncoderConfig(name="resnet_small", n_bits=N_BITS, image_size=28, channels=1)


@pytest.fixture(scope="module")
def server(index: Index, free_port: Callable[[], int]) -> Iterator[str]:
    from serving.app import start_server, stop_server

    url = start_server(index.path, port=free_port(), groups=GROUPS, admin_token=TOKEN)
    try:
        yield url
    finally:
        stop_server()  # deletes the app and calls serve.shutdown()


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[ODHClient]:
    with ODHClient(server, timeout=60) as c:
        yield c


def _assert_exact(result, want) -> None:
    for hits, (want_d, want_i) in zip(result.results, want, strict=True):
        assert [h.distance for h in hits] == want_d
        assert [h.id for h in hits] == want_i


def test_healthz_and_stats(client: ODHClient) -> None:
    assert client.healthz()["status"] == "ok"
    stats = client.stats()
    assert stats["ntotal"] == N_DB and stats["shards"] == N_SHARDS and stats["n_bits"] == N_BITS
    assert len(stats["groups"]) == GROUPS and stats["missing_groups"] == []
    assert sum(g["ntotal"] for g in stats["groups"]) == N_DB
    assert stats["encoder"] and stats["generation"] >= 1


def test_search_by_codes_is_exact(client: ODHClient, index: Index) -> None:
    rng = np.random.default_rng(1)
    queries = rng.integers(0, 256, size=(5, N_BITS // 8), dtype=np.uint8)
    result = client.search(codes=queries, k=15, nprobe=NLIST)
    assert not result.partial and result.missing_groups == [] and result.n_bits == N_BITS
    _assert_exact(result, _brute_force(index.codes, index.ids, queries, 15))
    # hex strings work the same; keys/labels come back from the meta.
    again = client.search(codes=[q.tobytes().hex() for q in queries], k=15, nprobe=NLIST)
    assert again.ids() == result.ids()
    row = {int(i): r for r, i in enumerate(index.ids)}
    for hit in result[0]:
        assert hit.key == f"img-{hit.id}" and hit.label == [row[hit.id] % 4]


def test_json_and_arrow_answers_carry_the_same_hits(
    server: str, client: ODHClient, index: Index
) -> None:
    assert client.response_format == "arrow"  # the client's default
    queries = index.codes[:4]
    with ODHClient(server, timeout=60, response_format="json") as json_client:
        by_json = json_client.search(codes=queries, k=12, nprobe=NLIST, max_distance=20)
    by_arrow = client.search(codes=queries, k=12, nprobe=NLIST, max_distance=20)
    as_tuples = [[(h.id, h.distance, h.key, h.label) for h in row] for row in by_json]
    assert [[(h.id, h.distance, h.key, h.label) for h in row] for row in by_arrow] == as_tuples
    assert by_arrow.id_array.shape == (4, 12) and by_arrow.ids() == by_json.ids()
    # the wire format as any client sees it (and errors stay JSON whatever the Accept)
    arrow = {"Accept": "application/vnd.apache.arrow.stream"}
    ok = httpx.post(f"{server}/v1/search", json={"ids": [3], "k": 2}, headers=arrow, timeout=60)
    assert ok.headers["content-type"] == "application/vnd.apache.arrow.stream"
    bad = httpx.post(f"{server}/v1/search", json={"ids": [3], "k": 0}, headers=arrow, timeout=60)
    assert bad.status_code == 422 and "k" in bad.json()["detail"]
    spec = httpx.get(f"{server}/openapi.json", timeout=30).json()
    answers = spec["paths"]["/v1/search"]["post"]["responses"]["200"]["content"]
    assert set(answers) == {"application/json", "application/vnd.apache.arrow.stream"}


def test_search_by_ids_and_images_is_exact(client: ODHClient, index: Index) -> None:
    pick = [0, 17, 99]
    by_id = client.search(ids=[int(index.ids[p]) for p in pick], k=10, nprobe=NLIST)
    want = _brute_force(index.codes, index.ids, index.codes[pick], 10)
    _assert_exact(by_id, want)
    by_image = client.search(images=[index.images[p] for p in pick], k=10, nprobe=NLIST)
    _assert_exact(by_image, want)
    for hits in by_id:
        assert hits[0].distance == 0


def test_k_larger_than_index_returns_everything(client: ODHClient, index: Index) -> None:
    # every list (an omitted nprobe is the index's recorded default, which may probe fewer)
    result = client.search(codes=index.codes[:1], k=1000, nprobe=NLIST)
    assert sorted(h.id for h in result[0]) == sorted(index.ids.tolist())


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"ids": [1', 400, "malformed JSON"),
        ({"images": ["***"]}, 422, "images[0]"),
        ({"images": [base64.b64encode(b"not an image").decode()]}, 422, "images[0]"),
        ({"codes": ["00ff"]}, 422, "codes[0]"),
        ({"codes": ["00ff00ff", "0f"]}, 422, "codes[1]"),
        ({"ids": [3, 123456789]}, 404, "ids[1]=123456789"),
        ({"ids": [3], "k": 1001}, 422, "k"),
        ({"ids": [3], "extra": True}, 422, "extra"),
        ({"images": [base64.b64encode(_png_bomb()).decode()]}, 422, "images[0]"),
        ({"images": [base64.b64encode(b"\x89PNG" + b"\0" * (5 << 20)).decode()]}, 422, "images[0]"),
        ({"ids": [3], "max_distance": -1}, 422, "max_distance"),
        ({"ids": list(range(257))}, 422, "ids"),
    ],
)
def test_bad_inputs_get_4xx_naming_the_field(
    server: str, client: ODHClient, index: Index, body: object, status: int, field: str
) -> None:
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    resp = httpx.post(
        f"{server}/v1/search", headers={"content-type": "application/json"}, timeout=60, **kwargs
    )
    assert resp.status_code == status, resp.text
    assert field in resp.json()["detail"], resp.text
    # The replica stays healthy: a good request right after succeeds.
    assert len(client.search(ids=[int(index.ids[0])], k=3)[0]) == 3


def test_client_error_carries_status_and_message(client: ODHClient) -> None:
    with pytest.raises(ODHClientError) as info:
        client.search(ids=[10**12], k=3)
    assert info.value.status == 404 and "ids[0]" in info.value.message
    with pytest.raises(ValueError, match="exactly one"):
        client.search(ids=[1], codes=["00"])


def test_shard_group_in_process_is_tie_exact(index: Index) -> None:
    from serving.searcher import ShardGroup

    group = ShardGroup(index.path, list(range(N_SHARDS)), num_threads=1)
    rng = np.random.default_rng(2)
    queries = np.concatenate(
        [index.codes[:4], rng.integers(0, 256, size=(4, N_BITS // 8), dtype=np.uint8)]
    )
    for k in (1, 4, 25):
        hits = group.search(queries, k, nprobe=NLIST)
        for row_d, row_i, (want_d, want_i) in zip(
            hits.distances, hits.ids, _brute_force(index.codes, index.ids, queries, k), strict=True
        ):
            assert row_d.tolist() == want_d and row_i.tolist() == want_i
    codes, found = group.lookup([int(index.ids[5]), 10**9])
    assert found.tolist() == [True, False]
    np.testing.assert_array_equal(codes[0], index.codes[5])
    assert group.stats()["ntotal"] == N_DB


def test_max_distance_and_stats_hops(client: ODHClient, index: Index) -> None:
    full = client.search(codes=index.codes[:3], k=40, nprobe=NLIST)
    near = client.search(codes=index.codes[:3], k=40, nprobe=NLIST, max_distance=8)
    for row_all, row in zip(full, near, strict=True):
        assert [h.id for h in row] == [h.id for h in row_all if h.distance <= 8]
        assert row[0].distance == 0
    assert not client.search(codes=index.codes[:1], k=5, require_all=True).partial
    stats = client.stats()
    assert stats["replicas"] == 1 and stats["placement"] == "split"
    assert all(g["held_generations"] == [1] for g in stats["groups"])


def test_hops_are_measured_on_the_request_path(client: ODHClient, index: Index) -> None:
    """The ingress traces the Serve handle calls each request makes (``X-ODH-Trace: 1``)."""
    by_codes = client.search(codes=index.codes[:1], k=3, trace=True)
    by_ids = client.search(ids=[int(index.ids[0])], k=3, trace=True)
    by_image = client.search(images=[index.images[0]], k=3, trace=True)
    assert (by_codes.hops, by_ids.hops, by_image.hops) == (1, 2, 2)
    assert set(by_codes.timing_ms) == {"search", "total"}
    assert set(by_ids.timing_ms) == {"lookup", "search", "total"}
    assert set(by_image.timing_ms) == {"encode", "search", "total"}
    assert by_image.timing_ms["total"] >= by_image.timing_ms["encode"] > 0
    assert client.search(codes=index.codes[:1], k=3).hops is None  # only when asked


def test_openapi_docs_are_served(server: str) -> None:
    spec = httpx.get(f"{server}/openapi.json", timeout=30).json()
    assert {"/v1/search", "/v1/healthz", "/v1/stats", "/v1/admin/reload"} <= set(spec["paths"])
    codes = spec["components"]["schemas"]["SearchRequest"]["properties"]["codes"]["anyOf"][0]
    assert codes["items"]["minLength"] == codes["items"]["maxLength"] == N_BITS // 4
    assert httpx.get(f"{server}/docs", timeout=30).status_code == 200


def test_searcher_core_mmaps_and_switches_generations(index: Index, tmp_path: Path) -> None:
    from serving.layout import GroupSpec
    from serving.searcher import SearcherCore

    core = SearcherCore(index.path, [0, 1], 1, group=0, mmap_threshold_bytes=0)
    first = core.stats()
    assert first["generation"] == 1 and first["held_generations"] == [1]
    queries = index.codes[:3]
    before = core.search(queries, 5, NLIST)
    spec2 = GroupSpec(_new_generation(index, Path(index.path).parent), (0, 1, 2), 2)
    assert core.prepare(spec2)["generation"] == 2
    after = core.search(queries, 5, NLIST, spec2)
    want = _brute_force(index.codes, index.ids, queries, 5)
    assert [r.tolist() for r in after.distances] == [d for d, _ in want]
    assert core.stats(spec2)["held_generations"] == [1, 2]
    np.testing.assert_array_equal(core.search(queries, 5, NLIST).ids, before.ids)


def _new_generation(index: Index, root: Path) -> str:
    """A copy of the index directory whose manifest says generation 2."""
    import dataclasses
    import shutil

    from indexer.manifest import read_manifest, write_manifest

    out = root / "gen2"
    if not out.exists():
        shutil.copytree(index.path, out)
        manifest = read_manifest(str(out))
        write_manifest(str(out), dataclasses.replace(manifest, generation=2))
    return str(out)


def test_reload_needs_the_token_then_switches_generation(
    server: str, client: ODHClient, index: Index, tmp_path: Path
) -> None:
    url = f"{server}/v1/admin/reload"
    assert httpx.post(url, json={}, timeout=30).status_code == 401
    bad = httpx.post(url, json={}, headers={"Authorization": "Bearer nope"}, timeout=30)
    assert bad.status_code == 401
    with pytest.raises(ODHClientError) as info:
        client.reload(TOKEN, index=str(tmp_path / "nothing"))
    assert info.value.status == 400 and "index" in info.value.message
    new_dir = _new_generation(index, Path(index.path).parent)
    answer = client.reload(TOKEN, index=new_dir)
    assert answer["generation"] == 2 and answer["previous_generation"] == 1
    assert all(g["replicas_prepared"] == 1 for g in answer["groups"])
    result = client.search(ids=[int(index.ids[0])], k=5, nprobe=NLIST)
    assert result.generation == 2 and not result.partial
    assert result[0][0].distance == 0
    stats = client.stats()
    assert stats["generation"] == 2 and stats["index"] == new_dir


def test_ingress_placement_searches_without_a_hop(server: str, index: Index) -> None:
    """placement=ingress: the ingress replica holds every shard; answers equal brute force."""
    from ray import serve

    from serving.app import start_server

    port = int(server.rsplit(":", 1)[1])
    url = start_server(
        index.path, port=port, placement="ingress", route_prefix="/local", app_name="odh-local"
    )
    try:
        with ODHClient(url, timeout=60) as local:
            stats = local.stats()
            hops = [
                local.search(trace=True, k=3, **query).hops
                for query in (
                    {"codes": index.codes[:1]},
                    {"images": index.images[:1]},
                    {"ids": [int(index.ids[0])]},
                )
            ]
            assert hops == [0, 1, 0]  # only the encoder is a Serve hop
            assert len(stats["groups"]) == 1 and stats["ntotal"] == N_DB
            rng = np.random.default_rng(2)
            queries = rng.integers(0, 256, size=(4, N_BITS // 8), dtype=np.uint8)
            result = local.search(codes=queries, k=12, nprobe=NLIST)
            _assert_exact(result, _brute_force(index.codes, index.ids, queries, 12))
            pick = [3, 42]
            by_id = local.search(ids=[int(index.ids[p]) for p in pick], k=8, nprobe=NLIST)
            _assert_exact(by_id, _brute_force(index.codes, index.ids, index.codes[pick], 8))
    finally:
        serve.delete("odh-local")


def test_images_without_a_known_image_set_are_a_clear_404(server: str, index: Index) -> None:
    """This fixture's codes name no image set: thumbnails say so, the page still loads."""
    resp = httpx.get(f"{server}/v1/images/{int(index.ids[0])}", timeout=30)
    assert resp.status_code == 404 and "image set" in resp.json()["detail"], resp.text
    page = httpx.get(f"{server}/", timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "static/app.js" in page.text
    script = httpx.get(f"{server}/static/app.js", timeout=30)
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    sample = httpx.get(f"{server}/v1/sample", params={"n": 5, "seed": 1}, timeout=30).json()
    assert len(sample["ids"]) == 5 and set(sample["ids"]) <= set(index.ids.tolist())
