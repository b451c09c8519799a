"""Tests for fineprune.defenses.magnitude: the original project's recipe reaches its sparsity
schedule, reports what it measured, leaves the BadNet alone and repeats exactly from a seed."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TinyBenchmark
from fineprune.data import load_dataset
from fineprune.defenses.magnitude import MagnitudePruningSettings, dense_sparsity, prune_by_magnitude
from fineprune.errors import InputError
from fineprune.models import load_model

FAST = dict(epochs=1, batch_size=8, pruning_frequency=1)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(initial_sparsity=-0.1), "--initial-sparsity -0.1 is outside [0, 1)"),
        (dict(final_sparsity=1.0), "--final-sparsity 1 is outside [0, 1)"),
        (dict(initial_sparsity=0.8, final_sparsity=0.7), "--initial-sparsity 0.8 is greater than --final-sparsity 0.7"),
        (dict(pruning_frequency=0), "--pruning-frequency 0 must be at least 1"),
        (dict(epochs=0), "--epochs 0 must be at least 1"),
    ],
)
def test_settings_are_checked_up_front(settings: dict, message: str) -> None:
    with pytest.raises(InputError) as error:
        MagnitudePruningSettings(**settings)
    assert str(error.value) == message


def test_equal_initial_and_final_sparsity_is_allowed() -> None:
    assert MagnitudePruningSettings(initial_sparsity=0.6, final_sparsity=0.6).final_sparsity == 0.6

@pytest.fixture(scope="module")
def pruned(tiny: TinyBenchmark):
    """The tiny BadNet repaired with a short schedule (untouched BadNet and repeat runs: test_defense_checks)."""
    return prune_by_magnitude(load_model(tiny.badnet), load_dataset(tiny.clean_validation),
                              MagnitudePruningSettings(seed=7, **FAST))

def test_every_dense_layer_reaches_the_final_sparsity(pruned) -> None:
    result = pruned
    assert set(result.sparsity) == {"fc_1", "fc_2", "output"}
    for layer, sparsity in result.sparsity.items():
        assert sparsity == pytest.approx(0.7, abs=0.005), layer
    assert dense_sparsity(result.model) == result.sparsity
    conv_kernel = result.model.get_layer("conv_3").kernel.numpy()
    assert np.mean(conv_kernel == 0) < 0.01  # only Dense layers are pruned

def test_repair_reports_what_it_measured(pruned, tiny: TinyBenchmark) -> None:
    result = pruned
    clean_count = len(load_dataset(tiny.clean_validation))
    assert result.heldout_images == round(clean_count * 0.1)
    assert result.train_images + result.heldout_images == clean_count
    assert result.fine_tuning_steps == int(np.ceil(result.train_images / 8))
    assert result.heldout_accuracy_before_pct == 100.0  # the tiny BadNet is perfect on clean data
    assert 0.0 <= result.heldout_accuracy_after_pct <= 100.0
    assert [layer.name for layer in result.model.layers if "prune" in layer.name] == []

