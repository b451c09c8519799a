"""Tests for fineprune.pruning_curve: the sweep through Fine-Pruning's order and the accuracy-drop
points read off it."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TinyBenchmark
from fineprune.data import load_dataset
from fineprune.defenses.channels import mean_channel_activations, prune_channels, pruning_order
from fineprune.errors import InputError
from fineprune.metrics import accuracy_pct, attack_success_pct
from fineprune.models import load_model, predict_classes
from fineprune.pruning_curve import SweepPoint, accuracy_drop_points, pruning_sweep


def test_only_conv_layers_can_be_swept(tiny: TinyBenchmark) -> None:
    with pytest.raises(InputError, match="layer 'fc_1' is a Dense, not a Conv2D layer"):
        pruning_sweep(load_model(tiny.badnet), "fc_1", load_dataset(tiny.clean_test), {})


def test_bad_steps_and_activations_are_refused(tiny: TinyBenchmark) -> None:
    badnet = load_model(tiny.badnet)
    with pytest.raises(InputError, match="step 0 must be at least 1"):
        pruning_sweep(badnet, "conv_3", load_dataset(tiny.clean_test), {}, step=0)
    with pytest.raises(InputError, match="3 activations for the 60 channels of layer 'conv_3'"):
        pruning_sweep(badnet, "conv_3", load_dataset(tiny.clean_test), {}, activations=np.zeros(3))


@pytest.fixture(scope="module")
def sweep(tiny: TinyBenchmark):
    """A coarse sweep of conv_3 on the tiny benchmark (0, 7, ..., 56, 60 channels pruned)."""
    badnet = load_model(tiny.badnet)
    clean, poisoned = load_dataset(tiny.clean_test), load_dataset(tiny.poisoned)
    before = [w.copy() for w in badnet.model.get_weights()]
    ranked_on = load_dataset(tiny.clean_validation).x
    points = pruning_sweep(badnet, "conv_3", clean, {"trigger": poisoned},
                           activations=mean_channel_activations(badnet.model, "conv_3", ranked_on, "unit"), step=7)
    return badnet, clean, poisoned, before, points

def test_sweep_starts_at_the_unpruned_model(sweep) -> None:
    badnet, clean, poisoned, _, points = sweep
    first = points[0]
    assert first.channels_pruned == 0 and first.fraction_pruned == 0.0
    assert first.clean_accuracy_pct == accuracy_pct(badnet.predict_classes(clean.x), clean.y)
    assert first.attack_success_pct == {"trigger": attack_success_pct(badnet.predict_classes(poisoned.x), poisoned.y)}
    assert first.attack_success_pct["trigger"] > 90  # it is a BadNet

def test_sweep_steps_through_every_channel(sweep) -> None:
    *_, points = sweep
    assert [p.channels_pruned for p in points] == [0, 7, 14, 21, 28, 35, 42, 49, 56, 60]
    fractions = [p.fraction_pruned for p in points]
    assert fractions == sorted(set(fractions)) and fractions[-1] == 1.0
    assert fractions[1] == pytest.approx(7 / 60)

def test_sweep_follows_the_activation_order_and_leaves_the_badnet_alone(sweep, tiny: TinyBenchmark) -> None:
    badnet, clean, poisoned, before, points = sweep
    for original, now in zip(before, badnet.model.get_weights()):
        np.testing.assert_array_equal(original, now)
    # The point at 21 channels is the net with the 21 channels least active on the ranking data pruned.
    ranking = load_dataset(tiny.clean_validation).x
    order = pruning_order(mean_channel_activations(badnet.model, "conv_3", ranking, "unit"))
    pruned = prune_channels(badnet.model, "conv_3", order[:21])
    point = next(p for p in points if p.channels_pruned == 21)
    assert point.clean_accuracy_pct == accuracy_pct(predict_classes(pruned, clean.x, "unit"), clean.y)
    asr = attack_success_pct(predict_classes(pruned, poisoned.x, "unit"), poisoned.y)
    assert point.attack_success_pct == {"trigger": asr}

def test_a_layer_that_a_path_bypasses_is_swept_by_zeroing_weights(tiny: TinyBenchmark) -> None:
    """conv_4 does not cut the net (flatten_1 -> fc_1 goes around it), so its sweep reruns the whole
    net with zeroed channels; the numbers are those of the net with the channels pruned."""
    badnet = load_model(tiny.badnet)
    clean, poisoned = load_dataset(tiny.clean_test), load_dataset(tiny.poisoned)
    activations = mean_channel_activations(badnet.model, "conv_4", clean.x, "unit")
    points = pruning_sweep(badnet, "conv_4", clean, {"trigger": poisoned}, activations=activations, step=40)
    assert [p.channels_pruned for p in points] == [0, 40, 80]
    pruned = prune_channels(badnet.model, "conv_4", pruning_order(activations)[:40])
    assert points[1].clean_accuracy_pct == accuracy_pct(predict_classes(pruned, clean.x, "unit"), clean.y)
    assert points[1].attack_success_pct == {
        "trigger": attack_success_pct(predict_classes(pruned, poisoned.x, "unit"), poisoned.y)}

def test_with_every_channel_pruned_the_net_gives_one_class(sweep) -> None:
    badnet, clean, poisoned, _, points = sweep
    silenced = prune_channels(badnet.model, "conv_3", range(60))
    classes = np.unique(np.concatenate([predict_classes(silenced, images.x, "unit") for images in (clean, poisoned)]))
    assert len(classes) == 1
    (constant,) = classes
    assert points[-1].clean_accuracy_pct == pytest.approx(100.0 * np.mean(clean.y == constant))
    assert points[-1].attack_success_pct["trigger"] == (100.0 if constant == poisoned.y[0] else 0.0)

def _point(pruned: int, accuracy: float, asr: float = 100.0) -> SweepPoint:
    return SweepPoint(pruned, pruned / 10, accuracy, {"trigger": asr})

def test_accuracy_drop_points_pick_the_deepest_pruning_within_each_drop() -> None:
    points = [_point(0, 95.0), _point(2, 95.0), _point(4, 93.5), _point(6, 93.0, 60.0),
              _point(8, 80.0, 5.0), _point(9, 86.0, 0.0), _point(10, 25.0, 0.0)]
    chosen = accuracy_drop_points(points, [0, 2, 4, 10, 30, 100])
    assert {drop: point.channels_pruned for drop, point in chosen.items()} == {
        0.0: 2, 2.0: 6, 4.0: 6, 10.0: 9, 30.0: 9, 100.0: 10,
    }
    assert chosen[2.0].attack_success_pct == {"trigger": 60.0}

def test_accuracy_drop_points_need_a_baseline_and_non_negative_drops() -> None:
    with pytest.raises(InputError, match="no point with 0 channels pruned"):
        accuracy_drop_points([_point(2, 90.0)], [2])
    with pytest.raises(InputError, match="accuracy drop -1 must be at least 0"):
        accuracy_drop_points([_point(0, 90.0)], [-1])
