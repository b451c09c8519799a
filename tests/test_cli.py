"""Tests for fineprune.cli: one-line usage errors and the command runner."""

from __future__ import annotations

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
