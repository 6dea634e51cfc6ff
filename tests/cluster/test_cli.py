"""The `odh` command line: parsing, help, and errors that name the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from cluster.cli import build_parser, fashion_mnist_source, main
from cluster.report import format_hits


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from cluster.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n"
        "heavy = [m for m in ('torch', 'ray', 'faiss') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "command",
    ["data", "train", "encode", "build", "serve", "query", "eval", "bench", "demo"],
)
def test_every_stage_has_a_subcommand(command: str) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0


def test_query_needs_exactly_one_kind_of_input() -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["query", "--id", "1", "--code", "ab"])
    args = parser.parse_args(["query", "--id", "1", "2", "-k", "3"])
    assert args.id == [1, 2] and args.k == 3


def test_missing_fashion_mnist_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        fashion_mnist_source(str(tmp_path))


def test_stage_errors_exit_2_with_a_message(tmp_path: Path, caplog) -> None:
    missing = tmp_path / "nope"
    code = main(
        ["data", "fashion-mnist", "--output", str(tmp_path / "o"), "--source", str(missing)]
    )
    assert code == 2
    assert str(missing) in caplog.text


def test_format_hits_renders_labels_and_partial() -> None:
    hit = SimpleNamespace(id=7, distance=3, key="a/7", label=[1])
    result = SimpleNamespace(results=[[hit]], partial=True, missing_groups=[1])
    text = format_hits(["q0"], result, class_names=["shirt", "bag"])
    assert "bag" in text and "a/7" in text and "PARTIAL" in text and "[1]" in text


def test_cli_reference_is_in_sync_with_the_parser() -> None:
    from cluster.cli_doc import render_cli_reference

    committed = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    assert committed == render_cli_reference(), "run: python -m cluster.cli_doc > docs/cli.md"
