"""The one (de)serialiser of the project's versioned JSON files.

``manifest.json`` (``indexer.manifest.Manifest``, ``ShardEntry``), ``_dataset.json``
(``indexer.imageset.DatasetInfo``, ``SplitProtocol``) and a checkpoint's ``config.json``
(``odh_core.checkpoint.EncoderConfig``) are frozen dataclasses written and read by
:func:`to_json` / :func:`from_json` — no hand-written per-class code — under one policy:

- **unknown fields are ignored**, with a debug log naming them (a newer writer may add optional
  fields; an older reader keeps working);
- **format_version** (on a format that has the field): must be present and equal to the version
  the reader writes (the field's default); anything else is refused naming the file;
- a field is written under its name, or under the nested JSON path in its metadata
  (:func:`json_path`); values the format also writes for readers but that are computed from
  other fields (``ntotal``) are listed in the class's ``__json_derived__`` and skipped on read;
- a missing required field, a value of the wrong type or a value the class's ``__post_init__``
  rejects raises the format's error type (a ``ValueError``) naming the file and the field.

Values are converted by the field's type hint (pydantic's lax mode: ``list`` → ``tuple``,
``"3"`` → ``3``); nested format dataclasses go through :func:`from_json` themselves.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
_MISSING = object()
_VERSION = "format_version"


def json_path(*path: str) -> dict[str, tuple[str, ...]]:
    """Field metadata storing a dataclass field under the nested JSON ``path``:
    ``quantizer_file: str = field(metadata=json_path("quantizer", "file"))``."""
    if not path:
        raise ValueError("json_path needs at least one key")
    return {"json_path": tuple(path)}


def _path(f: dataclasses.Field) -> tuple[str, ...]:
    return tuple(f.metadata.get("json_path", (f.name,)))


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(value)
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


def _put(out: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        out = out.setdefault(key, {})
    out[path[-1]] = value


def to_json(obj: Any) -> dict[str, Any]:
    """A format dataclass → a JSON-ready dict (nested paths, derived values included)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        _put(out, _path(f), _encode(getattr(obj, f.name)))
    for path, attr in getattr(type(obj), "__json_derived__", {}).items():
        _put(out, tuple(path.split(".")), _encode(getattr(obj, attr)))
    return out


def _get(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return _MISSING
        cur = cur[key]
    return cur


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _adapter(hint: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(hint)


def _convert(hint: Any, value: Any, source: str, error: type[Exception]) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_json(hint, value, source, error=error)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if value is None:
            return None
        if len(rest) == 1:
            return _convert(rest[0], value, source, error)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = args[0]
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            if not isinstance(value, list | tuple):
                raise error(f"{source}: expected a list, got {type(value).__name__}")
            return tuple(
                from_json(item, v, f"{source}[{i}]", error=error) for i, v in enumerate(value)
            )
    from pydantic import ValidationError

    try:
        return _adapter(hint).validate_python(value)
    except ValidationError as exc:
        msg = "; ".join(e["msg"] for e in exc.errors())
        raise error(f"{source}: {msg}, got {value!r}") from None


def from_json(
    cls: type[T], obj: Any, source: str | None = None, *, error: type[Exception] = ValueError
) -> T:
    """A JSON object → an instance of the format dataclass ``cls`` (see the module policy).

    ``source`` (the file, for messages) defaults to the class's ``__json_source__``.
    """
    source = source or getattr(cls, "__json_source__", cls.__name__)
    if not isinstance(obj, Mapping):
        raise error(f"{source}: expected a JSON object, got {type(obj).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    if _VERSION in fields:
        supported = fields[_VERSION].default
        if obj.get(_VERSION) != supported:
            raise error(
                f"{source}: format_version {obj.get(_VERSION)!r} is not supported "
                f"(expected {supported})"
            )
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        path = _path(f)
        value = _get(obj, path)
        if value is _MISSING:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required:
                raise error(f"{source}: missing field {'.'.join(path)!r}")
            continue
        kwargs[name] = _convert(hints[name], value, f"{source}: {'.'.join(path)}", error)
    known = {_path(f)[0] for f in fields.values()}
    known |= {p.split(".")[0] for p in getattr(cls, "__json_derived__", {})}
    unknown = sorted(set(obj) - known)
    if unknown:
        logger.debug("%s: ignoring unknown fields %s", source, unknown)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, error):
            raise
        raise error(f"{source}: {exc}") from exc
