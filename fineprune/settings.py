"""Settings that are checked up front, and the seeded held-out split they share.

Settings are frozen dataclasses. A field a command exposes as an option is declared with `option`:
its help text, metavar, type and bounds; `CheckedSettings` checks every such field on creation and
names the option in a one-line InputError, as the command line spells it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from fineprune.errors import InputError


def option(default: Any, help: str, metavar: str, kind: type | None = None, low: float | None = None,
           high: float | None = None, low_open: bool = False, high_open: bool = False, unset: str | None = None) -> Any:
    """A settings field a command offers as `--field-name`; its values are parsed as `kind`
    (default: the type of `default`) and must lie within `low`..`high` (open ends where said).
    A value of None means "not given" and is never checked; `unset` says what happens then, for
    --help (e.g. "chosen by the strength rule")."""
    return field(default=default, metadata={"help": help, "metavar": metavar, "kind": kind or type(default),
                                            "bounds": (low, high, low_open, high_open), "unset": unset})


def check_bounds(name: str, value: Any, bounds: tuple[float | None, float | None, bool, bool]) -> None:
    """InputError naming the option `--name` if `value` lies outside `bounds` (see `option`)."""
    low, high, low_open, high_open = bounds
    if value is None:
        return
    above_low = low is None or (value > low if low_open else value >= low)
    below_high = high is None or (value < high if high_open else value <= high)
    if above_low and below_high:
        return
    flag = f"--{name.replace('_', '-')}"
    if high is None:
        floor = "positive" if low_open and low == 0 else f"greater than {low:g}" if low_open else f"at least {low:g}"
        raise InputError(f"{flag} {value:g} must be {floor}")
    raise InputError(f"{flag} {value:g} is outside {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}")


# The one seed rule: every command and function starts from seed 0 unless given another, an integer
# in [0, SEED_HIGH] (NumPy's legacy seeding, which Keras's set_random_seed also seeds, takes no more).
SEED_HIGH = 2**32 - 1


def check_seed(seed: Any, name: str = "--seed") -> int:
    """`seed` if it is an integer in [0, SEED_HIGH], else InputError naming the option `name`."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= SEED_HIGH:
        raise InputError(f"{name} {seed} is not an integer in [0, {SEED_HIGH}]")
    return int(seed)


@dataclass(frozen=True)
class CheckedSettings:
    """Base of all settings: every `option` field is checked against its bounds up front.
    Subclasses add checks that involve several settings."""

    def __post_init__(self) -> None:
        for setting in fields(self):
            if "bounds" in setting.metadata:
                check_bounds(setting.name, getattr(self, setting.name), setting.metadata["bounds"])


@dataclass(frozen=True)
class HeldOutSettings(CheckedSettings):
    """Work on clean data that holds part of it out (seeded) to measure on images it never used."""

    validation_split: float = option(0.1, "share of the clean data held out (seeded shuffle) to measure on images "
                                     "the method never used", "F", low=0, high=1, low_open=True, high_open=True)
    seed: int = 0

    def __post_init__(self) -> None:
        check_seed(self.seed)
        super().__post_init__()


def split_heldout(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded shuffle of range(count) into (train indices, held-out indices), both non-empty."""
    if count < 2:
        raise InputError(f"need at least 2 clean images to fine-tune and hold out, got {count}")
    heldout = min(max(1, round(count * fraction)), count - 1)
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[heldout:]), np.sort(order[:heldout])
