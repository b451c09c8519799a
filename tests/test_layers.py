"""The package's imports point one way: each module imports only from its own layer or those below.

Layers, bottom to top: the tool's base (errors, files, settings, progress, command-line plumbing, data,
models, metrics, jobs, seeding); detection (maximum margin, trigger reversal); defenses; measurement (the
repaired detector G, evaluation, the pruning curve, inspect_net.py's inspection); reports and
figures; the Python API; the embedded benchmark; the command-line programs and the scripts. Imports
inside functions count too. One exception, stated here: the package's `__init__` hands out the API's
names on first use (`fineprune.repair`), a lazy import from the top that nothing below relies on.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

LAYERS: tuple[tuple[str, ...], ...] = (
    ("fineprune", "fineprune.errors", "fineprune.files", "fineprune.settings", "fineprune.progress", "fineprune.cli",
     "fineprune.data", "fineprune.models", "fineprune.metrics", "fineprune.jobs", "fineprune.seeding"),
    ("fineprune.detection",),
    ("fineprune.defenses",),
    ("fineprune.detector", "fineprune.evaluation", "fineprune.pruning_curve", "fineprune.inspection"),
    ("fineprune.report", "fineprune.plots"),
    ("fineprune.api",),
    ("fineprune.benchmark",),
    ("fineprune.commands", "fineprune.__main__"),
)
SCRIPTS = ("prune", "eval", "inspect_net", "benchmark")
LAZY_EXPORTS = {"fineprune": {"fineprune.api"}}  # the API at the top level, imported on first use


def layer_of(module: str) -> int:
    """The layer a module belongs to: the longest prefix listed in LAYERS; the scripts above all."""
    if module in SCRIPTS:
        return len(LAYERS)
    found = [(len(prefix), index) for index, layer in enumerate(LAYERS) for prefix in layer
             if module == prefix or (prefix != "fineprune" and module.startswith(prefix + "."))]
    if not found:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return max(found)[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every fineprune module `path` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fineprune":
            for alias in node.names:  # `from fineprune import plots` imports the module fineprune.plots
                candidate = f"{node.module}.{alias.name}"
                is_module = (REPO_ROOT / Path(*candidate.split("."))).with_suffix(".py").exists() or \
                    (REPO_ROOT / Path(*candidate.split(".")) / "__init__.py").exists()
                found.add(candidate if is_module else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "fineprune"}
    return found


SOURCES = sorted([*(REPO_ROOT / "fineprune").rglob("*.py"), *(REPO_ROOT / f"{name}.py" for name in SCRIPTS)])


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_no_module_imports_from_a_layer_above_it(path: Path) -> None:
    own = layer_of(module_name(path))
    allowed = LAZY_EXPORTS.get(module_name(path), set())
    above = sorted(name for name in imported_modules(path) if layer_of(name) > own and name not in allowed)
    assert not above, f"{module_name(path)} (layer {own}) imports from above: {', '.join(above)}"


def test_the_layer_test_catches_an_import_from_above(tmp_path: Path) -> None:
    assert layer_of("fineprune.benchmark.build") > layer_of("fineprune.evaluation") > layer_of("fineprune.models")
    assert layer_of("benchmark") == len(LAYERS) and layer_of("fineprune.defenses.head") == 2
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("fineprune.newcomer")
    source = tmp_path / "m.py"
    source.write_text("from fineprune import plots\nfrom fineprune.models import load_model\n"
                      "def f():\n    from fineprune.benchmark.build import BADNETS\n    import fineprune.report\n")
    assert imported_modules(source) == {"fineprune.plots", "fineprune.models", "fineprune.benchmark.build",
                                        "fineprune.report"}
