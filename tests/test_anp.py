"""Tests for fineprune.defenses.anp: the perturbed layer computes what it claims, pruning removes
the neurons below the mask threshold the strength rule chose within the budget; settings are checked.

Whether ANP removes a backdoor is measured on the benchmark (`make compare`), not here: on the
tinted BadNet, whose held-out part is a few images, the outcome of the masks' optimisation moves
with the CPU's rounding (measured: 0 to 280 of 520 neurons pruned, ASR 0-100%, by machine and
fixture seed), so a test of it would assert one run's luck."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import tf_keras

from conftest import TintedBadNet
from fineprune.defenses.anp import (THRESHOLDS, NeuronPruningSettings, PerturbedNeurons, adversarial_neuron_pruning,
                                   below, mask_statistics, pruned_copy)
from fineprune.errors import InputError

QUICK = dict(iterations=200, mask_batch_size=32, seed=0)
# A wide budget, so that pruning certainly starts (a held-out image is worth 17 points here) and
# certainly stops before the net is gone (pruning everything leaves chance, 25%).
BUDGET = 50.0


@pytest.fixture(scope="module")
def pruned(tinted: TintedBadNet):
    before = [w.copy() for w in tinted.badnet.model.get_weights()]
    settings = NeuronPruningSettings(**QUICK, accuracy_budget=BUDGET)
    return before, adversarial_neuron_pruning(tinted.badnet, tinted.clean, settings)


def test_a_perturbed_layer_scales_each_neurons_kernel_and_bias(tinted: TintedBadNet) -> None:
    conv = tinted.badnet.model.get_layer("conv_2")
    wrapper = PerturbedNeurons(conv)
    x = np.random.default_rng(0).normal(size=(2, *conv.input_shape[1:])).astype(np.float32)
    np.testing.assert_allclose(wrapper(x), conv(x), rtol=1e-5, atol=1e-5)  # mask 1, no noise: the layer itself
    mask = np.linspace(0, 1, conv.filters).astype(np.float32)
    wrapper.mask.assign(mask)
    wrapper.noise_kernel.assign(np.full(conv.filters, 0.25, np.float32))
    wrapper.perturbed.assign(True)
    kernel, bias = conv.get_weights()
    expected = tf_keras.activations.relu(conv.convolution_op(x, kernel * (mask + 0.25)) + bias * mask)
    np.testing.assert_allclose(wrapper(x), expected, rtol=1e-5, atol=1e-5)


def test_pruning_takes_the_neurons_below_the_chosen_threshold_within_the_budget(pruned) -> None:
    _, result = pruned
    strength = result.details["strength"]
    assert strength["parameter"] == "mask_threshold" and strength["chosen"] in THRESHOLDS
    assert result.heldout_accuracy_after_pct >= result.heldout_accuracy_before_pct - BUDGET
    count = sum(result.details["neurons_pruned_per_layer"].values())
    total = 20 + 40 + 60 + 80 + 160 + 160  # every hidden Conv2D and Dense neuron
    assert result.removed == f"{count}/{total} neurons" and count < total
    assert {name: len(neurons) for name, neurons in result.pruned_channels.items()} == \
        result.details["neurons_pruned_per_layer"]
    statistics = result.details["mask_statistics"]
    assert statistics["neurons"] == total and 0.0 <= statistics["quantiles"]["0"] <= statistics["quantiles"]["1"] <= 1.0


def test_pruned_neurons_are_exactly_zero(pruned, tinted: TintedBadNet) -> None:
    _, result = pruned
    for layer_name, neurons in result.pruned_channels.items():
        kernel, bias = result.model.get_layer(layer_name).get_weights()
        assert not kernel[..., neurons].any() and not bias[neurons].any()


def test_pruned_copy_leaves_the_model_alone(tinted: TintedBadNet) -> None:
    model = tinted.badnet.model
    copy = pruned_copy(model, {"fc_1": [0, 1, 2]})
    assert not copy.get_layer("fc_1").get_weights()[0][:, :3].any()
    assert model.get_layer("fc_1").get_weights()[0][:, :3].any()


def test_the_neurons_below_a_threshold_are_chosen_across_layers() -> None:
    masks = {"conv_3": np.array([0.9, 0.1, 0.5]), "fc_1": np.array([0.3, 0.1, 1.0])}
    assert below(masks, 0.35) == {"conv_3": [1], "fc_1": [0, 1]}
    assert below(masks, 0.0) == {}  # the ladder's last rung prunes nothing
    assert sum(map(len, below(masks, 1.01).values())) == 6
    assert THRESHOLDS[0] == 0.9 and THRESHOLDS[-2:] == (0.05, 0.0) and list(THRESHOLDS) == sorted(THRESHOLDS)[::-1]
    statistics = mask_statistics(masks)
    assert statistics["below_0.2"] == 2 and statistics["layer_means"]["fc_1"] == pytest.approx(1.4 / 3)


def test_settings_round_trip_and_are_checked() -> None:
    settings = NeuronPruningSettings(**QUICK)
    assert NeuronPruningSettings(**asdict(settings)) == settings
    for bad, message in [(dict(epsilon=1.5), "--epsilon 1.5 is outside [0, 1]"),
                         (dict(iterations=0), "--iterations 0 must be at least 1"),
                         (dict(accuracy_budget=-1.0), "--accuracy-budget -1 must be at least 0")]:
        with pytest.raises(InputError) as error:
            NeuronPruningSettings(**bad)
        assert str(error.value) == message
