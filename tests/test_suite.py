"""The suite itself: the `slow` marker is registered (and a misspelt marker is an error), conftest's
hook marks slow what uses a trained fixture, and the full suite stays the default: `make test`, the
README's test command and CI deselect nothing (`pytest -m "not slow"` is only for iteration)."""

from __future__ import annotations

import re

import pytest

import conftest
from conftest import REPO_ROOT, TRAINED_FIXTURES


def test_the_slow_marker_is_registered_and_markers_are_strict(pytestconfig: pytest.Config) -> None:
    assert any(line.startswith("slow:") for line in pytestconfig.getini("markers"))
    assert "--strict-markers" in pytestconfig.getini("addopts")


def test_the_hook_marks_slow_what_uses_a_trained_fixture() -> None:
    class Item:
        def __init__(self, *fixturenames: str) -> None:
            self.fixturenames, self.markers = list(fixturenames), []

        def add_marker(self, marker) -> None:
            self.markers.append(marker.name)

    uses_tiny, plain = Item("each_test_seeded", "workdir", "tiny", "tmp_path"), Item("each_test_seeded", "tmp_path")
    conftest.pytest_collection_modifyitems([uses_tiny, plain])
    assert uses_tiny.markers == ["slow"] and plain.markers == []
    assert all(hasattr(conftest, name) for name in TRAINED_FIXTURES)  # a renamed fixture must be renamed here too


def pytest_arguments(command: str) -> list[str]:
    """What follows `pytest` in a command line."""
    words = command.split()
    return words[words.index("pytest") + 1:] if "pytest" in words else []


def test_make_test_the_readme_and_ci_run_the_whole_suite() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe and "pytest" in recipe.group(1)
    for line in recipe.group(1).splitlines():
        assert not {"-m", "-k", "--deselect"} & set(pytest_arguments(line)), line
    readme = (REPO_ROOT / "README.md").read_text()
    commands = [line for line in readme.splitlines() if re.match(r"\s*make test(\s|$)", line)]
    assert commands and all(line.split("#")[0].split() == ["make", "test"] for line in commands), commands
    ci = [line for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines() if not line.startswith("#")]
    assert any("make test" in line for line in ci)
    assert not any(re.search(r"\s-m\s|PYTEST_ADDOPTS|make test-", line) for line in ci), ci
