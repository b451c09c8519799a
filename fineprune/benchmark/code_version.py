"""The version of the code that computed a kept result, for its fingerprint (`fineprune.jobs`).

A kept result (a comparison cell, say) is reused while its fingerprint matches, so the fingerprint
names the code too: the package's version and a hash of the source of the modules that computed
it and of every `fineprune` module they import, transitively. Imports are read from the source
with `ast` (imports inside functions count; `from fineprune import plots` is the module
`fineprune.plots`), never by importing. Modules loaded by name at run time (the registry's
`importlib` loop in `fineprune.defenses`) are not followed: a method's cells depend on its own
module, not on every other method's. Each module's imports and bytes are read once per process.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

import fineprune
from fineprune.defenses import get

PACKAGE_DIR = Path(fineprune.__file__).resolve().parent
HASH_DIGITS = 16  # of the SHA-256, in the version string


def code_version(*modules: str, package_dir: Path = PACKAGE_DIR) -> str:
    """The package's version and a hash of the source of `modules` and of every module of the
    package they import, transitively, e.g. "0.1.0+3f2a9c1b7d4e5f60". `package_dir` is the
    package's folder (its name is the package's name)."""
    closure = sorted(set().union(*(imported_closure(module, package_dir) for module in modules)))
    digest = hashlib.sha256()
    for module in closure:
        digest.update(f"{module} {_file_digest(module, package_dir)}\n".encode())
    return f"{fineprune.__version__}+{digest.hexdigest()[:HASH_DIGITS]}"


def method_module(method: str) -> str:
    """The module of the registered repair method `method` (the function it registered)."""
    run = get(method).run
    return getattr(run, "__wrapped__", run).__module__


@functools.cache
def imported_closure(module: str, package_dir: Path = PACKAGE_DIR) -> frozenset[str]:
    """`module` and every module of the package it imports, transitively."""
    found, todo = {module}, [module]
    while todo:
        for name in imported_modules(todo.pop(), package_dir) - found:
            found.add(name)
            todo.append(name)
    return frozenset(found)


@functools.cache
def imported_modules(module: str, package_dir: Path = PACKAGE_DIR) -> frozenset[str]:
    """The modules of the package that `module`'s source imports, at any depth of its code."""
    path = module_path(module, package_dir)
    if path is None:
        raise ValueError(f"{module}: no such module in {package_dir}")
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            for alias in node.names:  # `from fineprune import plots`: the module fineprune.plots
                submodule = f"{base}.{alias.name}"
                found.add(submodule if module_path(submodule, package_dir) else base)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return frozenset(name for name in found if module_path(name, package_dir))


def module_path(module: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The source file of `module` if it is a module of the package in `package_dir`, else None."""
    package, *parts = module.split(".")
    if package != package_dir.name:
        return None
    base = package_dir.joinpath(*parts)
    candidates = [base / "__init__.py", *([base.with_suffix(".py")] if parts else [])]
    return next((path for path in candidates if path.is_file()), None)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module name of a `from ... import` in `module` (relative ones resolved)."""
    if not node.level:
        return node.module or ""
    anchor = module.split(".") if is_package else module.split(".")[:-1]
    anchor = anchor[:len(anchor) - node.level + 1]
    return ".".join([*anchor, *([node.module] if node.module else [])])


@functools.cache
def _file_digest(module: str, package_dir: Path) -> str:
    path = module_path(module, package_dir)
    assert path is not None, module
    return hashlib.sha256(path.read_bytes()).hexdigest()
