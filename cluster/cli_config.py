"""The command line generated from config dataclasses: one flag per :func:`odh_core.options.option`
field, and the config built back from the parsed arguments.

Types map onto argparse as follows: ``int``/``float``/``str`` (optionally ``| None``) take one
value; ``tuple[T, ...]`` (optionally ``| None``) takes one or more; ``dict`` takes a JSON object;
``bool`` becomes ``--flag`` (``store_true``) when its default is False, the field's ``flag`` as
``store_false`` when its default is True and a flag like ``--no-resume`` is given, else
``--x/--no-x``. A field without a default is a required flag. Fields with ``cli=False`` stay off
the command line (library knobs, test hooks).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Sequence
from typing import Any

from odh_core.options import option_choices, option_meta

__all__ = [
    "CliField",
    "add_config_arguments",
    "cli_fields",
    "config_argv",
    "config_from_namespace",
    "parse_config",
]


@dataclasses.dataclass(frozen=True)
class CliField:
    """One config field as it appears on the command line."""

    name: str
    flag: str
    kind: str  # "value", "list", "json", "bool"
    type: type
    default: Any
    required: bool
    help: str
    choices: list[Any] | None


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """``(inner type, optional)`` of ``T | None``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


def cli_fields(cls: type) -> list[CliField]:
    """The command-line fields of a config dataclass, in declaration order."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    out: list[CliField] = []
    for f in dataclasses.fields(cls):
        meta = option_meta(f)
        if not meta["cli"] or not f.init:
            continue
        hint, _ = _unwrap(hints[f.name])
        origin = typing.get_origin(hint)
        if hint is bool:
            kind, typ = "bool", bool
        elif origin is tuple or origin is list:
            kind, typ = "list", typing.get_args(hint)[0]
        elif hint is dict or origin is dict:
            kind, typ = "json", dict
        elif hint in (int, float, str):
            kind, typ = "value", hint
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no command-line form for type {hint!r}")
        if f.default is not dataclasses.MISSING:
            default, required = f.default, False
        elif f.default_factory is not dataclasses.MISSING:
            default, required = f.default_factory(), False
        else:
            default, required = None, True
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        out.append(
            CliField(
                name=f.name,
                flag=flag,
                kind=kind,
                type=typ,
                default=default,
                required=required,
                help=meta["help"] or f.name.replace("_", " "),
                choices=option_choices(f),
            )
        )
    return out


def _dest(prefix: str, name: str) -> str:
    return f"{prefix}{name}"


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def add_config_arguments(
    parser: argparse.ArgumentParser, cls: type, *, prefix: str = ""
) -> list[CliField]:
    """Add one flag per command-line field of ``cls``; ``prefix`` keeps the destinations of
    several configs in one command apart. Returns the fields added."""
    fields = cli_fields(cls)
    group = parser.add_argument_group(cls.__name__, (cls.__doc__ or "").strip().split("\n")[0])
    for f in fields:
        dest = _dest(prefix, f.name)
        hidden_default = f.required or f.kind == "bool" or f.default in (None, (), {})
        shown = "" if hidden_default else f" (default: {f.default})"
        kw: dict[str, Any] = {"dest": dest, "help": f.help + shown}
        if f.kind == "bool":
            if f.default is False:
                group.add_argument(f.flag, action="store_true", **kw)
            elif f.flag != "--" + f.name.replace("_", "-"):
                group.add_argument(f.flag, action="store_false", default=True, **kw)
            else:
                group.add_argument(
                    f.flag, action=argparse.BooleanOptionalAction, default=f.default, **kw
                )
            continue
        kw["required"] = f.required
        kw["metavar"] = f.name.upper()
        if not f.required:
            kw["default"] = f.default
        if f.choices is not None:
            kw["choices"] = f.choices
        if f.kind == "json":
            kw["type"] = _json_object
            kw["metavar"] = "JSON"
        else:
            kw["type"] = f.type
        if f.kind == "list":
            kw["nargs"] = "+"
        group.add_argument(f.flag, **kw)
    return fields


def config_from_namespace(cls: type, namespace: argparse.Namespace, *, prefix: str = "") -> Any:
    """The config ``cls`` the parsed arguments describe (validated by its ``__post_init__``)."""
    values: dict[str, Any] = {}
    for f in cli_fields(cls):
        value = getattr(namespace, _dest(prefix, f.name))
        if f.kind == "list" and value is not None:
            value = tuple(value)
        values[f.name] = value
    return cls(**values)


def config_argv(config: Any, *, exclude: Sequence[str] = ()) -> list[str]:
    """The flags that give ``config`` back through :func:`config_from_namespace` (fields equal to
    their default are left out; so are ``exclude``)."""
    argv: list[str] = []
    for f in cli_fields(type(config)):
        if f.name in exclude:
            continue
        value = getattr(config, f.name)
        if not f.required and value == f.default:
            continue
        if f.kind == "bool":
            if f.default is False or f.flag != "--" + f.name.replace("_", "-"):
                argv.append(f.flag)  # store_true / store_false: the flag flips the default
            else:
                argv.append(f.flag if value else "--no-" + f.flag[2:])
        elif f.kind == "list":
            argv += [f.flag, *(str(v) for v in value)]
        elif f.kind == "json":
            argv += [f.flag, json.dumps(value)]
        else:
            argv += [f.flag, str(value)]
    return argv


def parse_config(cls: type, argv: Sequence[str], *, prog: str, description: str = "") -> Any:
    """Parse ``argv`` into one config (a benchmark's ``python -m`` entry)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_config_arguments(parser, cls)
    return config_from_namespace(cls, parser.parse_args(list(argv)))
