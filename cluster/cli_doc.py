"""Render the `odh` CLI reference (docs/cli.md) from the argparse parser, so it never drifts.

``python -m cluster.cli_doc > docs/cli.md`` regenerates it; a test checks the committed file.
"""

from __future__ import annotations

import argparse
import os
import sys

from cluster.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public accessor for subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _walk(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
    parts: list[str] = []
    children = _subparsers(parser)
    if not children or prefix == "odh":
        parts += [f"## `{prefix}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    for name, child in children.items():
        parts += _walk(child, f"{prefix} {name}")
    return parts


def render_cli_reference() -> str:
    """Markdown with the ``--help`` text of ``odh`` and of every subcommand."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # a fixed width, so the text does not depend on the terminal
    try:
        parser = build_parser()
        body = _walk(parser, "odh")
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    header = [
        "# `odh` command reference",
        "",
        "Generated from the parser by `python -m cluster.cli_doc > docs/cli.md`; do not edit.",
        "",
    ]
    return "\n".join(header + body)


if __name__ == "__main__":
    sys.stdout.write(render_cli_reference())
