"""ServeConfig: the build_app args dict validated into one model (no Ray needed)."""

from __future__ import annotations

import pytest

from serving.config import ServeConfig


def test_dict_args_become_a_config_with_derived_defaults() -> None:
    cfg = ServeConfig.from_dict({"index": "/x", "groups": "2", "searcher_cpus": 2.5})
    assert cfg.groups == 2 and cfg.effective_num_threads == 2
    assert cfg.effective_encode_timeout_s == cfg.timeout_s
    assert ServeConfig.from_dict({"index": "/x"}).effective_searcher_cpus == cfg.num_cpus
    assert ServeConfig.from_dict(cfg) is cfg


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"index": "/x", "colour": "red"}, r"unknown argument\(s\) \['colour'\]"),
        ({"groups": 2}, "'index'"),
        ({"index": "/x", "placement": "everywhere"}, "placement"),
        ({"index": "/x", "timeout_s": 0}, "timeout_s"),
        ({"index": "/x", "groups": "two"}, "groups must be of type int"),
        ({"index": "/x", "num_threads": 0}, "num_threads"),
    ],
)
def test_bad_args_name_the_field(args: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ServeConfig.from_dict(args)
