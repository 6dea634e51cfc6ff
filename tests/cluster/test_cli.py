"""The `odh` command line: generated from the configs, help, errors that name the problem."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest

from cluster.cli import COMMANDS, build_parser, command_parsers, config_class, main, parse_command
from cluster.cli_config import cli_fields, config_argv
from cluster.report import format_hits
from indexer.converters.fashion_mnist import fashion_mnist_source
from odh_core.options import option, option_choices

ROOT = Path(__file__).parents[2]


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from cluster.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n"
        "heavy = [m for m in ('torch', 'ray', 'faiss', 'pyarrow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("command", [c.path for c in COMMANDS], ids=lambda p: " ".join(p))
def test_every_subcommand_help_works(command: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser(command).parse_args([*command, "--help"])
    assert exc.value.code == 0


def test_every_stage_has_a_subcommand() -> None:
    tops = {c.path[0] for c in COMMANDS}
    stages = {"data", "train", "encode", "build", "serve", "query", "eval", "bench", "demo"}
    assert stages <= tops | {"index", "cluster"}


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.configs], ids=lambda c: c.name)
def test_flags_and_defaults_are_the_configs(command) -> None:
    """Every CLI field of every config is a flag whose default and choices are the config's."""
    parser = command_parsers()[command.path]
    help_text = parser.format_help()
    argv: list[str] = list(command.path)
    for name in command.configs:
        for f in cli_fields(config_class(name)):
            assert f.flag in help_text, (command.name, f.flag)
            if f.required:
                argv += [f.flag, "1" if f.type is int else "x"]
    extra = {("query",): ["--id", "1"], ("build",): ["--codes", "c"]}.get(command.path, [])
    argv += extra
    _, configs, _ = parse_command(argv)
    for name, config in zip(command.configs, configs, strict=True):
        cls = config_class(name)
        assert type(config) is cls
        for f in dataclasses.fields(cls):
            field = next((c for c in cli_fields(cls) if c.name == f.name), None)
            if field is None or field.required or field.flag in extra:
                continue
            assert getattr(config, f.name) == field.default, (command.name, f.name)
            if f.default is not dataclasses.MISSING:
                assert field.default == f.default
            assert field.choices == option_choices(f)


def test_choices_come_from_the_registries() -> None:
    from indexer.quantizer import list_quantizers
    from odh_core.config import list_modes
    from odh_core.layers import list_layers
    from odh_core.methods import list_methods
    from odh_core.models import list_encoders
    from serving.config import list_placements

    def choices(cls: type, name: str) -> list | None:
        return next(f.choices for f in cli_fields(cls) if f.name == name)

    train = config_class("odh_core.config:TrainConfig")
    assert choices(train, "model") == list_encoders()
    assert choices(train, "layer") == list_layers() and "xnor_weight_only" not in list_layers()
    assert choices(train, "method") == list_methods()
    assert choices(train, "mode") == list_modes()
    assert choices(config_class("indexer.build:BuildConfig"), "quantizer") == list_quantizers()
    assert choices(config_class("serving.config:ServeConfig"), "placement") == list_placements()


def test_flags_become_configs() -> None:
    from indexer.build import BuildConfig
    from odh_core.config import TrainConfig

    _, (job, train, run, runtime), _ = parse_command(
        ["train", "--images", "i", "--output", "o", "--bits", "32", "--full-precision",
         "--threads", "3", "--stage1-epochs", "5", "--gpu", "--num-cpus", "2"]
    )  # fmt: skip
    assert (job.image_set, job.output, run.use_gpu, run.workers) == ("i", "o", True, 1)
    assert train == TrainConfig(n_bits=32, binary=False, num_threads=3, transition_epoch=5)
    assert runtime.num_cpus == 2
    _, (target, build, _), _ = parse_command(
        ["build", "--output", "x", "--delete", "3", "4", "--shards", "2", "--no-resume"]
    )
    assert target.delete == (3, 4) and build == BuildConfig(n_shards=2, resume=False)
    _, (up,), _ = parse_command(["cluster", "up", "--worker-resources", '{"searcher": 1}'])
    assert up.worker_resources == {"searcher": 1}


def test_one_actor_cpus_default_for_encode_and_index() -> None:
    _, (encode, _, _), _ = parse_command(["encode", "--images", "i", "--checkpoint", "c",
                                          "--output", "o"])  # fmt: skip
    _, (job, _, _), _ = parse_command(["index", "--images", "i", "--checkpoint", "c",
                                       "--output", "o"])  # fmt: skip
    assert job.actor_cpus == encode.num_cpus
    assert job.encode_config("o/codes") == dataclasses.replace(encode, output="o/codes")


def test_query_needs_exactly_one_kind_of_input(caplog) -> None:
    _, (query,), _ = parse_command(["query", "--id", "1", "2", "-k", "3"])
    assert query.id == (1, 2) and query.k == 3
    assert main(["query", "--id", "1", "--code", "ab"]) == 2
    assert "exactly one of --image, --code, --id" in caplog.text


def test_config_argv_round_trips() -> None:
    from cluster.index_job import IndexJobConfig

    config = IndexJobConfig(images="s3://b/i", checkpoint="c", output="o", nlist=8, actor_cpus=2.0)
    _, (back, _, _), _ = parse_command(["index", *config_argv(config)])
    assert back == config


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


def _fake_benchmark(ran: list) -> types.ModuleType:
    module = types.ModuleType("fake_bench")
    module.__doc__ = "A fake benchmark."

    @dataclasses.dataclass(frozen=True)
    class Config:
        """Fake."""

        n: int = option(3, help="rows")
        fast: bool = option(False, help="hurry")

    def run(config: Config) -> int:
        ran.append(config)
        return 0

    module.Config = Config  # type: ignore[attr-defined]
    module.run = run  # type: ignore[attr-defined]
    return module


def test_bench_finds_benchmarks_by_entry_point(monkeypatch, capsys) -> None:
    ran: list = []
    module = _fake_benchmark(ran)
    monkeypatch.setitem(sys.modules, "fake_bench", module)
    ep = metadata.EntryPoint(name="fake", value="fake_bench", group="odh.benchmarks")

    def entry_points(*, group: str):
        return [ep] if group == "odh.benchmarks" else []

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    assert main(["bench", "fake", "--n", "7", "--fast"]) == 0
    assert ran == [module.Config(n=7, fast=True)]
    with pytest.raises(SystemExit) as exc:
        main(["bench", "fake", "--help"])
    assert exc.value.code == 0
    assert "--n N" in capsys.readouterr().out
    assert main(["bench", "nope"]) == 2


def test_benchmark_modules_follow_the_convention() -> None:
    """Every entry point in pyproject.toml names a module with ``Config`` and ``run``."""
    import importlib
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = project["entry-points"]["odh.benchmarks"]
    for name, target in names.items():
        if not (ROOT / (target.replace(".", "/") + ".py")).is_file():
            continue  # written on another branch
        module = importlib.import_module(target)
        assert dataclasses.is_dataclass(module.Config), name
        assert module.Config.__dataclass_params__.frozen, name
        assert callable(module.run), name
        cli_fields(module.Config)  # every field has a command-line form


def test_cli_reference_is_in_sync_with_the_configs() -> None:
    from cluster.cli_doc import render_cli_reference

    committed = (ROOT / "docs" / "cli.md").read_text()
    assert committed == render_cli_reference(), "run: python -m cluster.cli_doc > docs/cli.md"
