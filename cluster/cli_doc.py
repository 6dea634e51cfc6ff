"""Render the `odh` CLI reference (docs/cli.md) from the command table, so it never drifts.

``python -m cluster.cli_doc > docs/cli.md`` regenerates it; a test checks the committed file.
"""

from __future__ import annotations

import os
import sys

from cluster.cli import COMMANDS, GROUPS, build_parser, command_parsers


def _section(title: str, text: str) -> list[str]:
    return [f"## `{title}`", "", "```text", text.rstrip(), "```", ""]


def render_cli_reference() -> str:
    """Markdown with the ``--help`` text of ``odh`` and of every subcommand."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # a fixed width, so the text does not depend on the terminal
    try:
        parsers = command_parsers()
        body = _section("odh", build_parser(select=()).format_help())
        seen_groups: set[str] = set()
        for command in COMMANDS:
            top = command.path[0]
            if len(command.path) == 2 and top not in seen_groups:
                seen_groups.add(top)
                assert top in GROUPS
            body += _section(f"odh {command.name}", parsers[command.path].format_help())
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    header = [
        "# `odh` command reference",
        "",
        "Generated from the stage configs by `python -m cluster.cli_doc > docs/cli.md`; "
        "do not edit.",
        "",
    ]
    return "\n".join(header + body)


if __name__ == "__main__":
    sys.stdout.write(render_cli_reference())
