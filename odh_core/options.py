"""Typed configuration fields: one place for an option's default, help text and choices.

Every stage of the pipeline takes a frozen dataclass config. Its fields are declared with
:func:`option`, so that the ``odh`` command line, ``docs/cli.md`` and the JSON written beside an
artefact all come from the same declaration (no hand-written copies of defaults or choices)::

    @dataclass(frozen=True)
    class BuildConfig:
        n_shards: int = option(4, help="index shards", flag="--shards")
        quantizer: str = option("flat", help="coarse quantizer", choices=list_quantizers)

``choices`` may be a sequence or a zero-argument callable (a registry's ``list_*`` function),
called only when the command line is built, so that importing a config stays cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Choices", "option", "option_choices", "option_like", "option_meta"]

Choices = Sequence[Any] | Callable[[], Sequence[Any]]


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: Choices | None = None,
    flag: str | None = None,
    cli: bool = True,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with its command-line metadata.

    Args:
        default: the default value (omit it, and ``default_factory``, for a required option).
        help: one line for ``--help`` and the docs.
        choices: the allowed values, or a callable returning them (a registry).
        flag: the command-line flag when it is not ``--field-name`` (e.g. ``"--bits"``).
        cli: False keeps the field off the command line (library-only knobs, test hooks).
        default_factory: as in :func:`dataclasses.field`, for mutable defaults.
    """
    if not help or not isinstance(help, str):
        raise TypeError("option(): help must be a non-empty string")
    if flag is not None and not flag.startswith("-"):
        raise ValueError(f"option(): flag must start with '-', got {flag!r}")
    metadata = {"help": help, "choices": choices, "flag": flag, "cli": cli}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def option_meta(f: dataclasses.Field) -> dict[str, Any]:
    """The metadata :func:`option` stored on a field (empty values for a plain field)."""
    meta = dict(f.metadata)
    return {
        "help": meta.get("help", ""),
        "choices": meta.get("choices"),
        "flag": meta.get("flag"),
        "cli": meta.get("cli", True),
    }


def option_choices(f: dataclasses.Field) -> list[Any] | None:
    """The field's allowed values (calling the registry when ``choices`` is callable)."""
    choices = option_meta(f)["choices"]
    if choices is None:
        return None
    return list(choices() if callable(choices) else choices)


def option_like(cls: type, name: str, **overrides: Any) -> Any:
    """A field declared like ``cls.name`` (same default, help, choices and flag), for a config
    that carries another stage's option (e.g. the index job's ``n_shards``), so that the default
    and the help text are written once. ``overrides`` replace single :func:`option` arguments."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise ValueError(f"option_like(): {cls.__name__} has no field {name!r}")
    f = fields[name]
    meta = option_meta(f)
    kwargs: dict[str, Any] = {
        "help": meta["help"] or name,
        "choices": meta["choices"],
        "flag": meta["flag"],
        "cli": meta["cli"],
    }
    if f.default is not dataclasses.MISSING:
        kwargs["default"] = f.default
    elif f.default_factory is not dataclasses.MISSING:
        kwargs["default_factory"] = f.default_factory
    kwargs.update(overrides)
    return option(**kwargs)
