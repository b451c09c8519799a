"""The package builds as pyproject.toml says: every subpackage in the wheel, the console scripts,
the exact pins of requirements.txt as its dependencies, and `python -m fineprune` dispatching."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from fineprune.__main__ import COMMANDS, main


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel pip builds from a copy of what the package is made of (so the clone stays clean)."""
    source, folder = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "fineprune", source / "fineprune", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(folder), str(source)], check=True, capture_output=True)
    (built,) = folder.glob("fineprune-*.whl")
    return zipfile.ZipFile(built)


def normalised(requirement: str) -> str:
    """A pinned requirement as package metadata spells it (PEP 503 names: lower case, dashes)."""
    name, _, version = requirement.partition("==")
    return f"{name.lower().replace('_', '-')}=={version}"


@pytest.mark.slow  # pip builds the wheel (its fixture)
def test_the_wheel_holds_every_module_of_the_package(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for source in (REPO_ROOT / "fineprune").rglob("*.py"):
        assert source.relative_to(REPO_ROOT).as_posix() in names
    for pattern in (REPO_ROOT / "fineprune" / "benchmark" / "patterns").glob("*.npz"):  # data the build needs
        assert pattern.relative_to(REPO_ROOT).as_posix() in names
    assert not any(name.startswith(("tests/", "models/", "data/")) for name in names)


@pytest.mark.slow  # pip builds the wheel (its fixture)
def test_the_wheel_installs_the_commands_and_the_pins(wheel: zipfile.ZipFile) -> None:
    meta = next(name for name in wheel.namelist() if name.endswith(".dist-info/METADATA"))
    requires = {line.split(": ", 1)[1] for line in wheel.read(meta).decode().splitlines()
                if line.startswith("Requires-Dist: ")}
    pins = {line.strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    assert {normalised(pin) for pin in pins} == {normalised(pin) for pin in requires}
    entry_points = wheel.read(next(n for n in wheel.namelist() if n.endswith("entry_points.txt"))).decode()
    for script in ("fineprune-prune", "fineprune-eval", "fineprune-inspect", "fineprune-benchmark"):
        assert f"{script} = fineprune.commands." in entry_points


def test_python_m_fineprune_names_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    usage = capsys.readouterr().out
    assert all(f"  {command} " in usage for command in COMMANDS)
    assert main([]) == 2 and capsys.readouterr().err == usage
    assert main(["nothing"]) == 2
    assert "'nothing' is not a command" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["prune", "--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("prune.py ")


def test_the_top_level_scripts_are_wrappers(tmp_path: Path) -> None:
    for script in ("prune", "eval", "inspect_net", "benchmark"):
        text = (REPO_ROOT / f"{script}.py").read_text()
        assert f"from fineprune.commands.{script} import main" in text and len(text.splitlines()) < 15
