"""The repair methods by name: what `prune.py --method` and the comparison read.

Each method's module registers itself with `register`; `fineprune.defenses` imports every module
of the package, so adding a method touches one new file.
"""

from __future__ import annotations

import functools
from dataclasses import Field, dataclass, fields
from typing import Any, Callable

from fineprune.data import LabelledImages
from fineprune.defenses.core import RepairResult, RepairSettings
from fineprune.errors import InputError
from fineprune.models import LoadedModel
from fineprune.progress import Progress, silent
from fineprune.seeding import seeded

RepairFunction = Callable[[LoadedModel, LabelledImages, Any, Progress], RepairResult]


@dataclass(frozen=True)
class Defense:
    """A repair method: its name, one line of help, its settings type, the function that runs it."""

    name: str
    summary: str
    settings_type: type[RepairSettings]
    run: RepairFunction
    order: int  # where it appears in --help and the comparison

    def settings(self, **values: Any) -> RepairSettings:
        """This method's settings: the defaults, overridden by `values` (checked up front)."""
        known = {f.name for f in fields(self.settings_type)}
        for name in values:
            if name not in known:
                raise InputError(f"--{name.replace('_', '-')} does not apply to --method {self.name} (its options: "
                                 f"{', '.join(self.options())})")
        return self.settings_type(**{**values, "method": self.name})


    def options(self) -> list[str]:
        """The command-line options this method takes, as spelt there."""
        return [f"--{f.name.replace('_', '-')}" for f in fields(self.settings_type) if "help" in f.metadata]


DEFENSES: dict[str, Defense] = {}


def register(name: str, summary: str, settings_type: type[RepairSettings], order: int) -> Callable[[RepairFunction], RepairFunction]:
    """Decorator: register the decorated function as repair method `name`. The function registered
    (and returned) runs seeded by its settings' seed with deterministic ops (`seeding.seeded`), so
    that a run repeats, and puts the process's random state and settings back after."""

    def add(method: RepairFunction) -> RepairFunction:
        if name in DEFENSES:
            raise ValueError(f"repair method {name!r} is registered twice")

        @functools.wraps(method)
        def run(badnet: LoadedModel, clean: LabelledImages, settings: Any, progress: Progress = silent) -> RepairResult:
            with seeded(settings.seed):
                return method(badnet, clean, settings, progress)

        DEFENSES[name] = Defense(name, summary, settings_type, run, order)
        return run

    return add


def names() -> list[str]:
    """Every method's name, in the order of --help and the comparison."""
    return [d.name for d in sorted(DEFENSES.values(), key=lambda d: d.order)]


def get(name: str) -> Defense:
    """The method called `name`, or InputError listing them."""
    if name not in DEFENSES:
        raise InputError(f"--method {name} is not one of {', '.join(names())}")
    return DEFENSES[name]


def option_fields() -> dict[str, list[tuple[str, Field]]]:
    """Every setting a method takes from the command line: its field name -> (method, field) for
    each method that has it, in the order of `names()`."""
    found: dict[str, list[tuple[str, Field]]] = {}
    for name in names():
        for setting in fields(DEFENSES[name].settings_type):
            if "help" in setting.metadata:
                found.setdefault(setting.name, []).append((name, setting))
    return found


def settings_for(name: str, **values: Any) -> RepairSettings:
    """Settings for method `name`: its defaults overridden by `values`."""
    return get(name).settings(**values)


def repair(badnet: LoadedModel, clean: LabelledImages, settings: RepairSettings,
           progress: Progress = silent) -> RepairResult:
    """Run the method `settings.method` on `badnet` with `clean` data (seeded, see `register`); the
    BadNet is left untouched. `progress` is called with a line now and then (`fineprune.progress`)."""
    return get(settings.method).run(badnet, clean, settings, progress)
