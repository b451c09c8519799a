"""Tests for fineprune.defenses.fine_pruning: Fine-Pruning (`activation`) and its halves."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TinyBenchmark
from fineprune.data import load_dataset
from fineprune.defenses.channels import mean_channel_activations, prune_channels, pruning_order
from fineprune.defenses.core import split_heldout
from fineprune import defenses
from fineprune.defenses.fine_pruning import ActivationPruningSettings, fine_prune
from fineprune.errors import InputError
from fineprune.metrics import accuracy_pct
from fineprune.models import load_model, predict_classes


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(accuracy_budget=-1.0), "--accuracy-budget -1 must be at least 0"),
        (dict(prune_fraction=1.0), "--prune-fraction 1 is outside (0, 1)"),
        (dict(channels=(1, 2), prune_fraction=0.5), "give either a non-empty list of channels or --prune-fraction, not both"),
        (dict(channels=()), "give either a non-empty list of channels or --prune-fraction, not both"),
        (dict(epochs=0), "--epochs 0 must be at least 1"),
    ],
)
def test_settings_are_checked_up_front(settings: dict, message: str) -> None:
    with pytest.raises(InputError) as error:
        ActivationPruningSettings(**settings)
    assert str(error.value) == message


@pytest.fixture(scope="module")
def badnet_and_clean(tiny: TinyBenchmark):
    return load_model(tiny.badnet), load_dataset(tiny.clean_validation)

def run(badnet_and_clean, method: str = "activation", **settings):
    badnet, clean = badnet_and_clean
    tuning = {} if method == "prune" else dict(epochs=1, batch_size=8)
    return fine_prune(badnet, clean, defenses.settings_for(method, seed=3, **tuning, **settings))


@pytest.mark.parametrize("method, option, other", [("finetune", "layer", "conv_4"), ("finetune", "prune_fraction", 0.5),
                                                   ("prune", "epochs", 9), ("prune", "learning_rate", 0.1)])
def test_each_half_refuses_the_other_halfs_options(method: str, option: str, other: object) -> None:
    with pytest.raises(InputError) as refused:
        defenses.settings_for(method, **{option: other})
    assert str(refused.value).startswith(f"--{option.replace('_', '-')} does not apply to --method {method}")

def test_activation_keeps_pruned_channels_exactly_zero_through_fine_tuning(badnet_and_clean) -> None:
    result = run(badnet_and_clean, method="activation", prune_fraction=0.5)
    (channels,) = result.pruned_channels.values()
    assert len(channels) == 30 and result.fine_tuning_steps > 0
    kernel, bias = result.model.get_layer("conv_3").get_weights()
    assert not kernel[..., channels].any() and not bias[channels].any()
    others = [c for c in range(60) if c not in channels]
    original = badnet_and_clean[0].model.get_layer("conv_3").get_weights()[0]
    assert not np.array_equal(kernel[..., others], original[..., others])  # the rest was fine-tuned

def test_prune_stops_at_the_accuracy_budget(badnet_and_clean) -> None:
    badnet, clean = badnet_and_clean
    result = run(badnet_and_clean, method="prune", accuracy_budget=4.0)
    (channels,) = result.pruned_channels.values()
    assert result.fine_tuning_steps == 0
    assert result.heldout_accuracy_after_pct >= result.heldout_accuracy_before_pct - 4.0
    _, heldout = split_heldout(len(clean), 0.1, seed=3)
    accuracy = lambda model: accuracy_pct(predict_classes(model, clean.x[heldout], "unit"), clean.y[heldout])  # noqa: E731
    assert accuracy(prune_channels(badnet.model, "conv_3", channels)) == result.heldout_accuracy_after_pct
    if len(channels) < 59:  # one more channel, in the same order, would have broken the budget
        ranked_on = clean.x[np.setdiff1d(np.arange(len(clean)), heldout)]
        order = pruning_order(mean_channel_activations(badnet.model, "conv_3", ranked_on, "unit"))
        assert list(order[: len(channels)]) == channels
        one_more = prune_channels(badnet.model, "conv_3", list(order[: len(channels) + 1]))
        assert accuracy(one_more) < result.heldout_accuracy_before_pct - 4.0
    # The pruning step alone changes nothing else.
    for layer in ("conv_1", "conv_4", "fc_1", "output"):
        for now, before in zip(result.model.get_layer(layer).get_weights(), badnet.model.get_layer(layer).get_weights()):
            np.testing.assert_array_equal(now, before)

def test_given_channels_are_pruned_exactly_and_held_at_zero(badnet_and_clean) -> None:
    result = run(badnet_and_clean, channels=(7, 3, 41))
    assert result.pruned_channels == {"conv_3": [7, 3, 41]}
    kernel, bias = result.model.get_layer("conv_3").get_weights()
    assert not kernel[..., [7, 3, 41]].any() and not bias[[7, 3, 41]].any() and bias[[0, 1, 2]].any()

def test_finetune_prunes_nothing(badnet_and_clean) -> None:
    result = run(badnet_and_clean, method="finetune")
    assert result.pruned_channels == {} and result.fine_tuning_steps == int(np.ceil(result.train_images / 8))

def test_an_unknown_layer_is_refused(badnet_and_clean) -> None:
    with pytest.raises(InputError, match="layer 'conv_9' is not in the model"):
        run(badnet_and_clean, method="prune", layer="conv_9")
