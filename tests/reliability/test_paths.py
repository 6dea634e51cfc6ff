"""Confined paths (issue 14): a manifest can only name files inside its index directory, and a
reload only switches to indexes under the configured roots — ``..``, absolute paths and foreign
URLs (``http://127.0.0.1:1/x``) are refused before anything reads them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from indexer.manifest import Manifest, ShardEntry, check_relative_path, read_manifest
from serving.reload import ServedIndex, check_reload_target, reload_index, reload_roots

SHA = "0" * 64


def _manifest_json(**changes: Any) -> dict[str, Any]:
    shard = ShardEntry(0, "gen-000001/shard-00000.faissbin", SHA, "gen-000001/meta-00000.parquet",
                       SHA, 10)  # fmt: skip
    obj = Manifest(32, 4, "gen-000001/quantizer.faissbin", SHA, (shard,)).to_json()
    for path, value in changes.items():
        *parents, last = path.split(".")
        cur = obj
        for key in parents:
            cur = cur[int(key)] if key.isdigit() else cur[key]
        cur[last] = value
    return obj


@pytest.mark.parametrize(
    "bad",
    ["../outside.faissbin", "gen-000001/../../x", "/etc/passwd", "s3://other/x", "http://h/x",
     "file:/x", "a//b", "./x", "~/x", "a\\..\\b", ""],
)  # fmt: skip
def test_manifest_paths_must_stay_inside_the_index(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        check_relative_path(bad)
    for field in ("shards.0.file", "shards.0.meta_file", "quantizer.file"):
        Path(tmp_path, "manifest.json").write_text(json.dumps(_manifest_json(**{field: bad})))
        with pytest.raises(ValueError, match=r"manifest\.json"):
            read_manifest(str(tmp_path))


def test_good_paths_and_old_format_names_load(tmp_path: Path) -> None:
    for good in ("shard-00000.faissbin", "shard-00000-g00002.faissbin", "gen-000003/x.parquet"):
        assert check_relative_path(good) == good
    Path(tmp_path, "manifest.json").write_text(json.dumps(_manifest_json()))
    assert read_manifest(str(tmp_path)).shards[0].file == "gen-000001/shard-00000.faissbin"


def test_an_empty_shard_list_is_a_clear_error(tmp_path: Path) -> None:
    Path(tmp_path, "manifest.json").write_text(json.dumps(_manifest_json(shards=[])))
    with pytest.raises(ValueError, match=r"manifest\.json.*no shards"):
        read_manifest(str(tmp_path))


def test_reload_targets_are_confined_to_the_roots(tmp_path: Path) -> None:
    served = tmp_path / "indexes" / "live"
    other = tmp_path / "indexes" / "next"
    served.mkdir(parents=True)
    other.mkdir()
    roots = reload_roots({"index": str(served)})  # default: the served index's parent
    assert roots == [str(tmp_path / "indexes")]
    assert check_reload_target(str(other), roots) == str(other)
    assert check_reload_target(f"{served}/../next", roots) == str(other)
    for bad in ("http://127.0.0.1:1/x", "s3://bucket/idx", str(tmp_path), f"{served}/../../x",
                "/etc", "file:///etc"):  # fmt: skip
        with pytest.raises(ValueError, match="outside the allowed reload roots"):
            check_reload_target(bad, roots)
    (tmp_path / "indexes" / "link").symlink_to(tmp_path)  # a symlink out of the root
    with pytest.raises(ValueError, match="outside"):
        check_reload_target(str(tmp_path / "indexes" / "link"), roots)
    s3 = reload_roots({"index": str(served), "reload_roots": "s3://odh/indexes, /srv/idx"})
    assert s3 == ["s3://odh/indexes", "/srv/idx"]
    assert check_reload_target("s3://odh/indexes/v2", s3) == "s3://odh/indexes/v2"
    for bad in ("s3://odh/indexes-evil/x", "s3://odh/indexes/../x", "s3://other/indexes/v2"):
        with pytest.raises(ValueError):
            check_reload_target(bad, s3)


class _NoFanOut:
    """A fan-out that fails the test if the reload gets as far as the searchers."""

    def __len__(self) -> int:
        return 1

    @property
    def groups(self) -> list[Any]:
        raise AssertionError("a refused reload reached the searchers")


def test_reload_refuses_foreign_urls_before_reading_them(tmp_path: Path) -> None:
    from serving.errors import SearchFailure

    served = tmp_path / "live"
    served.mkdir()
    old = ServedIndex({"index": str(served), "generation": 1}, None, 32, 1)
    for bad in ("http://127.0.0.1:1/x", "/etc", f"{served}/../../elsewhere"):
        with pytest.raises(SearchFailure) as err:
            asyncio.run(
                reload_index(_NoFanOut(), old, bad, replicas=1, placement="split")  # type: ignore[arg-type]
            )
        assert err.value.status_code == 400
        assert "outside the allowed reload roots" in err.value.detail
