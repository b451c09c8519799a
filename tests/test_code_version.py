"""Tests for fineprune.benchmark.code_version: the version of the code a kept result was computed by."""

from __future__ import annotations

import shutil
from pathlib import Path

import fineprune
from fineprune.benchmark.code_version import code_version, imported_closure, method_module

FAKE = {  # a package of its own, as fineprune would be laid out
    "__init__.py": "__version__ = 'fake'\n",
    "a.py": "def run():\n    from fineprune import b  # inside a function: counts\n    return b.thing\n",
    "b.py": "import os\nimport fineprune.sub\nfrom .c import thing\n",
    "c.py": "thing = 1\n",
    "d.py": "unused = 1\n",
    "sub/__init__.py": "from . import e\n",
    "sub/e.py": "from ..c import thing\n",
}


def fake_package(root: Path, edits: dict[str, str] | None = None) -> Path:
    """The fake package under `root`/fineprune, with `edits` (file -> text) applied."""
    package = root / "fineprune"
    for name, text in {**FAKE, **(edits or {})}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    return package


def test_a_module_s_closure_follows_its_imports_at_any_depth(tmp_path: Path) -> None:
    package = fake_package(tmp_path)
    assert imported_closure("fineprune.a", package) == {"fineprune.a", "fineprune.b", "fineprune.c", "fineprune.sub",
                                                        "fineprune.sub.e"}
    assert imported_closure("fineprune.d", package) == {"fineprune.d"}


def test_the_version_changes_with_an_imported_module_and_only_then(tmp_path: Path) -> None:
    version = code_version("fineprune.a", package_dir=fake_package(tmp_path / "v1"))
    assert version.startswith(f"{fineprune.__version__}+") and len(version.split("+")[1]) == 16
    assert code_version("fineprune.a", package_dir=fake_package(tmp_path / "same")) == version
    assert code_version("fineprune.a", package_dir=fake_package(tmp_path / "d", {"d.py": "unused = 2\n"})) == version
    for edit in ({"sub/e.py": "from ..c import thing  # edited\n"}, {"a.py": FAKE["a.py"] + "# edited\n"}):
        assert code_version("fineprune.a", package_dir=fake_package(tmp_path / "edited", edit)) != version
        shutil.rmtree(tmp_path / "edited")


def test_several_modules_hash_the_union_of_their_closures(tmp_path: Path) -> None:
    package = fake_package(tmp_path)
    assert code_version("fineprune.a", "fineprune.c", package_dir=package) == code_version("fineprune.a",
                                                                                          package_dir=package)
    assert code_version("fineprune.a", "fineprune.d", package_dir=package) != code_version("fineprune.a",
                                                                                          package_dir=package)


def test_a_method_s_module_is_the_one_that_registered_it() -> None:
    assert method_module("head") == "fineprune.defenses.head"
    assert method_module("activation") == method_module("prune") == "fineprune.defenses.fine_pruning"


def test_the_comparison_s_own_code_holds_no_method() -> None:
    """A method's cells depend on its module and the comparison's: editing one method leaves the
    others' cells alone, since the registry loads the methods by name, not by import."""
    closure = imported_closure("fineprune.benchmark.comparison")
    assert {"fineprune.defenses.channels", "fineprune.evaluation", "fineprune.plots"} <= closure
    assert not {"fineprune.defenses.anp", "fineprune.defenses.head", "fineprune.defenses.magnitude"} & closure
    assert "fineprune.defenses.output_fit" in imported_closure(method_module("head"))
