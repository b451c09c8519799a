"""The strength rule: how strongly a method repairs, chosen from the defender's clean data alone.

Every purification method has a knob that trades clean accuracy for removal: a learning rate, a
penalty's weight, a perturbation's size, a number of rounds. Its strongest settings remove the
most and cost the most. The defender cannot measure removal (that needs poisoned data and the
attacker's target); what it can measure is the clean accuracy a setting costs on held-out clean
images. So the rule is: **the strongest setting whose held-out clean accuracy stays within
`accuracy_budget` points of the BadNet's** (the weakest, if none does, and the record says so).

Two forms of the one rule:
- `strongest_within_budget`: a ladder of settings, strongest first, each a run of its own,
  searched by halving (a stronger setting is taken to cost at least as much): the strongest
  within budget is kept, after about log2 of the ladder's length runs.
- `Checkpoints`: an iterative method (rounds, epochs) offers its net after each round; the last
  one within budget is kept, so the rule costs no extra run.

Neither takes poisoned data or a target: what they see is a held-out accuracy function. (The
benchmark's trade-off figure watches every net a rule measures through `observing`, and judges
them with poisoned data there, outside the rule.) The choice and the rule are recorded in the
repair's `details["strength"]` (the repaired file and `--json`).
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Sequence, TypeVar

import tf_keras

from fineprune.progress import Progress, silent

ACCURACY_BUDGET = 1.0  # points of held-out clean accuracy a rule may spend by default: the bar's 1 point
ACCURACY_BUDGET_HELP = ("the strength rule keeps the strongest setting whose held-out clean accuracy stays within "
                        "this many points of the BadNet's")

Setting = TypeVar("Setting")


@dataclass
class StrengthChoice:
    """What a strength rule tried and kept: `tried` holds (setting, held-out accuracy %) in the order run."""

    parameter: str
    rule: str
    accuracy_before_pct: float
    accuracy_budget: float
    tried: list[tuple[Any, float]] = field(default_factory=list)
    chosen: Any = None
    within_budget: bool = False

    def record(self) -> dict[str, Any]:
        """The choice as JSON-ready values, for a repair's details."""
        return {**asdict(self), "tried": [[value, accuracy] for value, accuracy in self.tried]}


def accepted(accuracy_pct: float, accuracy_before_pct: float, budget: float) -> bool:
    """Whether a held-out accuracy is within `budget` points of the BadNet's."""
    return accuracy_pct >= accuracy_before_pct - budget


Observer = Callable[[str, Any, tf_keras.Model], None]
_observer: ContextVar[Observer | None] = ContextVar("strength_observer", default=None)


@contextmanager
def observing(observer: Observer) -> Iterator[None]:
    """Within this block, every rule shows `observer` each net it measures, as (parameter, setting,
    net), and a ladder is run rung by rung in full, not searched by halving: the whole trade-off
    curve, for a figure. The choice is the same as without an observer (the halving search is
    replayed on the measured rungs)."""
    token = _observer.set(observer)
    try:
        yield
    finally:
        _observer.reset(token)


def strongest_within_budget(parameter: str, ladder: Sequence[Setting],
                            repair_at: Callable[[Setting], tf_keras.Model],
                            heldout_accuracy_pct: Callable[[tf_keras.Model], float], accuracy_before_pct: float,
                            budget: float, progress: Progress = silent, given: Setting | None = None,
                            ) -> tuple[tf_keras.Model, StrengthChoice]:
    """The net `repair_at` makes at the strongest of the `ladder`'s settings (strongest first) whose
    held-out accuracy is within `budget` points of `accuracy_before_pct` (or at the weakest, if
    none is), and the record of the choice. The ladder is searched by halving, as a stronger setting
    is taken to cost at least as much accuracy: about log2 of its length runs, not one per rung.
    With `given` (the user's own setting), that one alone is run, and recorded as "given"."""
    if given is not None:
        ladder = (given,)
    if not ladder:
        raise ValueError("a strength ladder needs at least one setting")
    rule = "given" if given is not None else (f"the strongest {parameter} of {list(ladder)} whose held-out clean "
                                              f"accuracy stays within {budget:g} points of the BadNet's")
    choice = StrengthChoice(parameter, rule, accuracy_before_pct, budget)
    observer = _observer.get()
    measured: dict[int, tuple[tf_keras.Model, float]] = {}

    def at(rung: int) -> tuple[tf_keras.Model, float]:
        if rung not in measured:
            model = repair_at(ladder[rung])
            measured[rung] = model, heldout_accuracy_pct(model)
            if observer is not None:
                observer(parameter, ladder[rung], model)
        return measured[rung]

    if observer is not None:
        for rung in range(len(ladder)):
            at(rung)
    kept: tf_keras.Model | None = None
    strongest, weakest = 0, len(ladder) - 1
    while strongest <= weakest:
        middle = (strongest + weakest) // 2
        model, accuracy = at(middle)
        choice.tried.append((ladder[middle], accuracy))
        within = accepted(accuracy, accuracy_before_pct, budget)
        progress(f"{parameter} {ladder[middle]:g}: held-out accuracy {accuracy:.2f}% "
                 f"({'within' if within else 'outside'} the {budget:g}-point budget)")
        if within:
            kept, choice.chosen, choice.within_budget = model, ladder[middle], True
            weakest = middle - 1
        else:
            strongest = middle + 1
            if middle == len(ladder) - 1:  # even the weakest is outside: keep it, and say so
                kept, choice.chosen = model, ladder[middle]
    assert kept is not None
    return kept, choice


class Checkpoints:
    """The rule for an iterative method: `offer` the net after each round (weakest first); the last
    offer within budget is kept. With none within budget, the first offer is kept."""

    def __init__(self, parameter: str, heldout_accuracy_pct: Callable[[tf_keras.Model], float],
                 accuracy_before_pct: float, budget: float, progress: Progress = silent) -> None:
        self.measure, self.progress = heldout_accuracy_pct, progress
        self.choice = StrengthChoice(parameter, f"the most {parameter} whose held-out clean accuracy stays within "
                                     f"{budget:g} points of the BadNet's", accuracy_before_pct, budget)
        self.weights: list[Any] | None = None

    def offer(self, value: Any, model: tf_keras.Model) -> bool:
        """Measure `model` after `value` rounds; keep its weights if within budget (or if it is the
        first offer). Returns whether it was within budget."""
        accuracy = self.measure(model)
        self.choice.tried.append((value, accuracy))
        observer = _observer.get()
        if observer is not None:
            observer(self.choice.parameter, value, model)
        within = accepted(accuracy, self.choice.accuracy_before_pct, self.choice.accuracy_budget)
        if within or self.weights is None:
            self.weights = [w.copy() for w in model.get_weights()]
            self.choice.chosen, self.choice.within_budget = value, within
        self.progress(f"{self.choice.parameter} {value}: held-out accuracy {accuracy:.2f}% "
                      f"({'within' if within else 'outside'} the {self.choice.accuracy_budget:g}-point budget)")
        return within

    def restore(self, model: tf_keras.Model) -> StrengthChoice:
        """Put the kept weights into `model`; the record of the choice."""
        if self.weights is None:
            raise ValueError("nothing was offered")
        model.set_weights(self.weights)
        return self.choice
