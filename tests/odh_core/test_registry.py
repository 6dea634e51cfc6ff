"""The generic registry behind the method and index-type registries."""

from __future__ import annotations

import pytest

from indexer.index_types import create_index_type, list_index_types
from odh_core.methods.registry import get_method_class, list_methods
from odh_core.registry import Registry


def test_register_get_create_and_names() -> None:
    reg: Registry[type] = Registry("widget", field="widget_type")

    @reg.register("b")
    class B:
        def __init__(self, x: int) -> None:
            self.x = x

    reg.add("a", dict)
    assert reg.names() == ["a", "b"] and "b" in reg and "c" not in reg
    assert reg.get("b") is B and reg.create("b", 3).x == 3
    reg.add("b", B)  # the same object again is fine
    with pytest.raises(ValueError, match=r"widget 'b' is already registered \(B\)"):
        reg.add("b", dict)
    with pytest.raises(ValueError, match=r"widget_type must be one of \['a', 'b'\], got 'c'"):
        reg.get("c")
    with pytest.raises(ValueError, match="non-empty"):
        reg.add("", dict)


def test_registration_order_and_lazy_modules() -> None:
    loaded: list[int] = []
    reg: Registry[type] = Registry(
        "thing", modules={"lazy": "json"}, load_all=lambda: loaded.append(1), sort=False
    )
    reg.add("z", int)
    reg.add("y", str)
    assert reg.names() == ["lazy", "z", "y"] and loaded
    # "lazy"'s module (json) registers nothing: still an unknown name, the known ones named
    with pytest.raises(ValueError, match="thing must be one of"):
        reg.get("lazy")


def test_project_registries_use_it() -> None:
    assert list_index_types() == ["flat", "hnsw", "ivf"]
    with pytest.raises(ValueError, match="index_type must be one of"):
        create_index_type("annoy", 64)
    assert list_methods() and get_method_class(list_methods()[0]).name == list_methods()[0]
    with pytest.raises(ValueError, match="hashing method must be one of"):
        get_method_class("nope")
