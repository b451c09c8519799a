"""Tests for fineprune.files: writing through a temporary file, and one-line error messages."""

from __future__ import annotations

import os
import stat

import pytest

from fineprune.files import first_line, replacing


class Boom(Exception):
    pass


def test_successful_block_creates_the_file_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "result.json"
    with replacing(path) as tmp:
        assert tmp.parent == path.parent  # same folder, so the rename is atomic
        assert tmp != path
        assert not path.exists()  # nothing at the destination while the block runs
        tmp.write_text("new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_successful_block_replaces_an_existing_file(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")
    with replacing(path) as tmp:
        assert path.read_text() == "old"
        tmp.write_text("new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_missing_folders_are_created(tmp_path):
    path = tmp_path / "a" / "b" / "model.h5"
    with replacing(path) as tmp:
        tmp.write_bytes(b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert [p.name for p in path.parent.iterdir()] == ["model.h5"]


def test_failing_block_creates_no_file(tmp_path):
    path = tmp_path / "result.json"
    with pytest.raises(Boom):
        with replacing(path) as tmp:
            tmp.write_text("half")
            raise Boom
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_failing_block_keeps_the_old_file_and_removes_the_temporary(tmp_path, error):
    path = tmp_path / "result.json"
    path.write_text("old")
    with pytest.raises(error):
        with replacing(path) as tmp:
            tmp.write_text("half-written")
            raise error
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_new_file_gets_the_permissions_a_plain_open_would_give(tmp_path):
    """Outputs are shared (a repaired model, a results file): not readable by their owner only."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    path = tmp_path / "result.json"
    with replacing(path) as tmp:
        tmp.write_text("x")
    assert stat.S_IMODE(os.stat(path).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)


@pytest.mark.parametrize(("error", "expected"), [
    (ValueError("only line"), "only line"),
    (ValueError("first\nsecond\nthird"), "first"),
    (OSError("\n  padded first\nsecond"), "padded first"),
    (RuntimeError(""), "RuntimeError"),
    (KeyError(), "KeyError"),
])
def test_first_line(error, expected):
    assert first_line(error) == expected
