"""Tests for fineprune.cli: one-line usage errors and the command runner."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fineprune import cli
from fineprune.cli import ArgumentParser, run
from fineprune.errors import InputError


@pytest.fixture
def parser() -> ArgumentParser:
    parser = ArgumentParser(prog="prune.py", description="Repair a BadNet.")
    parser.add_argument("model")
    parser.add_argument("--epochs", type=int, default=1)
    return parser


def test_parser_reads_good_arguments(parser):
    args = parser.parse_args(["bd_net.h5", "--epochs", "3"])
    assert (args.model, args.epochs) == ("bd_net.h5", 3)


def test_error_exits_2_with_exactly_one_line_on_stderr(parser, capsys):
    with pytest.raises(SystemExit) as caught:
        parser.error("something is wrong")
    assert caught.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "prune.py: error: something is wrong (see --help)\n"


@pytest.mark.parametrize(("argv", "says"), [
    pytest.param(["bd_net.h5", "--epochs", "many"], "invalid int value: 'many'", id="bad-type"),
    pytest.param(["bd_net.h5", "--unknown"], "unrecognized arguments: --unknown", id="unknown-option"),
    pytest.param([], "the following arguments are required: model", id="missing-argument"),
])
def test_usage_errors_are_one_line_naming_the_program(parser, capsys, argv, says):
    with pytest.raises(SystemExit) as caught:
        parser.parse_args(argv)
    assert caught.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n")
    assert err.startswith("prune.py: error: ")
    assert says in err
    assert "usage:" not in err


def test_run_returns_the_bodys_value(capsys):
    assert run("eval.py", lambda: 0) == 0
    assert run("eval.py", lambda: 7) == 7
    assert capsys.readouterr() == ("", "")


def test_run_reports_input_error_as_one_line_and_returns_2(capsys):
    def body() -> int:
        raise InputError("data/bad.h5: not an HDF5 file")

    assert run("eval.py", body) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "eval.py: error: data/bad.h5: not an HDF5 file\n"


def test_run_returns_130_on_keyboard_interrupt(capsys):
    def body() -> int:
        raise KeyboardInterrupt

    assert run("prune.py", body) == 130
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("prune.py: interrupted")


def test_run_lets_other_errors_through():
    """A bug is not bad input: it must keep its traceback, not become a quiet exit status."""
    def body() -> int:
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        run("prune.py", body)


def test_refuse_overwriting_names_the_option_and_the_input(tmp_path, monkeypatch):
    model = tmp_path / "models" / "net.h5"
    model.parent.mkdir()
    model.write_bytes(b"model")
    monkeypatch.chdir(tmp_path)
    cli.refuse_overwriting(tmp_path / "models" / "net_rp.h5", [model], "--output")  # a new file is fine
    with pytest.raises(InputError) as error:
        cli.refuse_overwriting(Path("models/../models/net.h5"), [model], "--output")
    assert str(error.value) == f"models/../models/net.h5: --output would overwrite the input {model}; choose another file"


def test_shared_options_read_as_every_script_spells_them(parser, capsys):
    cli.add_seed_option(parser)
    cli.add_clean_data_option(parser, "data/clean.h5", "clean data")
    cli.add_plots_option(parser, "figures")
    cli.add_version_option(parser)
    args = parser.parse_args(["bd_net.h5", "--seed", "7", "--plots", "figs"])
    assert (args.seed, args.clean_data, args.plots) == (7, "data/clean.h5", "figs")
    assert parser.parse_args(["bd_net.h5"]).seed == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["--version"])
    assert capsys.readouterr().out.startswith("prune.py ")


def test_plots_folder_refuses_a_file(tmp_path):
    assert cli.plots_folder(None) is None
    assert cli.plots_folder(str(tmp_path / "new")) == tmp_path / "new"
    (tmp_path / "taken").write_text("x")
    with pytest.raises(InputError, match="--plots names a file"):
        cli.plots_folder(str(tmp_path / "taken"))


def test_settings_options_carry_each_fields_default_and_bounds(parser):
    from fineprune.settings import CheckedSettings, option

    @dataclasses.dataclass(frozen=True)
    class Example(CheckedSettings):
        steps: int = option(5, "search steps", "N", low=1)
        not_an_option: int = 3

    cli.add_settings_options(parser.add_argument_group("settings"), Example)
    args = parser.parse_args(["bd_net.h5", "--steps", "9"])
    assert args.steps == 9 and not hasattr(args, "not_an_option")
    assert parser.parse_args(["bd_net.h5"]).steps == 5


@pytest.mark.parametrize("argv", [
    ["prune", "bd_net.h5", "--seed"], ["inspect_net", "bd_net.h5", "--seed"], ["benchmark", "oracle", "--seed"],
    ["benchmark", "data", "--seed"], ["benchmark", "demo", "--seeds", "0"], ["benchmark", "compare", "--seeds"],
    ["benchmark", "fidelity", "--seeds"],
])
@pytest.mark.parametrize("seed", ["-1", "4294967296", "0.5"])
def test_every_seed_option_refuses_a_seed_outside_the_rule_in_one_line(run_cli, argv: list[str], seed: str) -> None:
    result = run_cli(*argv, seed)
    assert result.code == 2 and result.out == ""
    assert result.err.endswith(f"{seed!r} is not an integer in [0, 4294967295] (see --help)\n")
    assert result.err.count("\n") == 1


def test_the_seed_rule_is_checked_the_same_way_everywhere() -> None:
    assert cli.seed_number("4294967295") == 4294967295 and cli.seed_number("0") == 0
    with pytest.raises(InputError, match=r"--seed -3 is not an integer in \[0, 4294967295\]"):
        cli.check_seed(-3)
    with pytest.raises(InputError, match="--seed True"):
        cli.check_seed(True)
