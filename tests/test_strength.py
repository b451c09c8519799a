"""Tests for fineprune.defenses.strength: the rule keeps the strongest setting within the budget,
searching by halving; checkpoints keep the last round within it; neither can see poisoned data."""

from __future__ import annotations

import inspect

import pytest
import tf_keras

from fineprune.defenses.strength import Checkpoints, accepted, observing, strongest_within_budget


class Net:
    """A stand-in for a repaired net: it only carries the strength it was made at."""

    def __init__(self, strength: float) -> None:
        self.strength = strength


def cost_curve(points_per_unit: float, before: float = 98.0):
    """Held-out accuracy falling linearly with strength."""
    return lambda net: before - points_per_unit * net.strength


LADDER = (16.0, 8.0, 4.0, 2.0, 1.0)


@pytest.mark.parametrize("per_unit, expected", [(0.05, 16.0), (0.2, 4.0), (0.5, 2.0), (1.0, 1.0)])
def test_the_strongest_setting_within_the_budget_is_kept(per_unit: float, expected: float) -> None:
    made: list[float] = []

    def repair_at(strength: float) -> Net:
        made.append(strength)
        return Net(strength)

    net, choice = strongest_within_budget("x", LADDER, repair_at, cost_curve(per_unit), 98.0, 1.0)
    assert net.strength == expected == choice.chosen and choice.within_budget
    assert len(made) <= 3  # halving: at most ceil(log2(5 + 1)) runs, not 5
    assert [value for value, _ in choice.tried] == made


def test_with_nothing_within_the_budget_the_weakest_is_kept_and_said() -> None:
    net, choice = strongest_within_budget("x", LADDER, Net, cost_curve(10.0), 98.0, 1.0)
    assert net.strength == 1.0 and not choice.within_budget
    assert choice.record()["tried"][-1] == [1.0, pytest.approx(88.0)]


def test_checkpoints_keep_the_last_round_within_the_budget() -> None:
    model = tf_keras.Sequential([tf_keras.layers.Dense(1, input_shape=(1,))])
    accuracies = iter([98.0, 97.5, 97.2, 96.0, 97.1])
    checkpoints = Checkpoints("rounds", lambda _: next(accuracies), 98.0, 1.0)
    for round_ in range(5):
        model.layers[0].kernel.assign([[float(round_)]])
        checkpoints.offer(round_, model)
    choice = checkpoints.restore(model)
    assert choice.chosen == 4 and choice.within_budget  # 96.0 at round 3 is outside; round 4 is back within
    assert model.layers[0].kernel.numpy()[0, 0] == 4.0


def test_accepted_is_inclusive() -> None:
    assert accepted(97.0, 98.0, 1.0) and not accepted(96.99, 98.0, 1.0)


def test_the_rule_is_given_no_poisoned_data() -> None:
    """What the rule may read is in its signature: settings, a repair at a setting, and held-out
    clean accuracy. No poisoned images, no target, no attack success."""
    for function in (strongest_within_budget, Checkpoints.__init__, Checkpoints.offer):
        for name in inspect.signature(function).parameters:
            assert not any(word in name for word in ("poison", "target", "trigger", "asr", "attack")), name


def test_an_observer_sees_the_whole_ladder_and_the_choice_does_not_change() -> None:
    seen: list[tuple[str, float]] = []
    plain_net, plain = strongest_within_budget("x", LADDER, Net, cost_curve(0.2), 98.0, 1.0)
    with observing(lambda parameter, value, net: seen.append((parameter, value))):
        net, watched = strongest_within_budget("x", LADDER, Net, cost_curve(0.2), 98.0, 1.0)
    assert seen == [("x", value) for value in LADDER]
    assert watched.chosen == plain.chosen == net.strength == plain_net.strength
    assert watched.tried == plain.tried  # the record is the halving search's, as without an observer
    model = tf_keras.Sequential([tf_keras.layers.Dense(1, input_shape=(1,))])
    with observing(lambda parameter, value, net: seen.append((parameter, value))):
        Checkpoints("rounds", lambda _: 98.0, 98.0, 1.0).offer(0, model)
    assert seen[-1] == ("rounds", 0)


def test_a_given_setting_is_run_alone_and_recorded_as_given() -> None:
    made: list[float] = []
    net, choice = strongest_within_budget("x", LADDER, lambda s: made.append(s) or Net(s), cost_curve(0.2), 98.0,
                                          1.0, given=16.0)
    assert made == [16.0] and net.strength == choice.chosen == 16.0
    assert choice.rule == "given" and not choice.within_budget  # 16 x 0.2 = 3.2 points, outside the budget
