"""Tests for fineprune.pruning: settings checks, the held-out split, magnitude pruning, and the
activation-pruning sweep (Fine-Pruning's pruning curve)."""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras

from conftest import TinyBenchmark
from fineprune.data import load_dataset
from fineprune.errors import InputError
from fineprune.metrics import accuracy_pct, attack_success_pct
from fineprune.models import load_model, predict_classes
from fineprune.pruning import (
    ActivationPruningSettings,
    MagnitudePruningSettings,
    SweepPoint,
    accuracy_drop_points,
    dense_sparsity,
    fine_prune,
    mean_channel_activations,
    prune_by_magnitude,
    prune_channels,
    pruning_order,
    pruning_sweep,
    split_heldout,
)

FAST = dict(epochs=1, batch_size=8, pruning_frequency=1)


@pytest.mark.parametrize(
    "kind, settings, message",
    [
        *((MagnitudePruningSettings, settings, message) for settings, message in [
            (dict(initial_sparsity=-0.1), "--initial-sparsity -0.1 is outside [0, 1)"),
            (dict(final_sparsity=1.0), "--final-sparsity 1 is outside [0, 1)"),
            (dict(initial_sparsity=0.8, final_sparsity=0.7), "--initial-sparsity 0.8 is greater than --final-sparsity 0.7"),
            (dict(validation_split=0.0), "--validation-split 0 is outside (0, 1)"),
            (dict(epochs=0), "--epochs 0 must be at least 1"),
            (dict(batch_size=0), "--batch-size 0 must be at least 1"),
            (dict(learning_rate=0.0), "--learning-rate 0 must be positive"),
        ]),
        *((ActivationPruningSettings, settings, message) for settings, message in [
            (dict(method="voodoo"), "--method voodoo is not one of magnitude, activation, finetune, prune"),
            (dict(max_accuracy_drop=-1.0), "--max-accuracy-drop -1 must be at least 0"),
            (dict(prune_fraction=1.0), "--prune-fraction 1 is outside (0, 1)"),
            (dict(channels=(1, 2), prune_fraction=0.5), "give either a non-empty list of channels or --prune-fraction, not both"),
            (dict(channels=()), "give either a non-empty list of channels or --prune-fraction, not both"),
            (dict(epochs=0), "--epochs 0 must be at least 1"),
        ]),
    ],
)
def test_settings_are_checked_up_front(kind: type, settings: dict, message: str) -> None:
    with pytest.raises(InputError) as error:
        kind(**settings)
    assert str(error.value) == message


def test_equal_initial_and_final_sparsity_is_allowed() -> None:
    assert MagnitudePruningSettings(initial_sparsity=0.6, final_sparsity=0.6).final_sparsity == 0.6


def test_heldout_split_is_seeded_disjoint_and_complete() -> None:
    train, heldout = split_heldout(100, 0.1, seed=3)
    assert len(heldout) == 10 and len(train) == 90
    assert sorted(np.concatenate([train, heldout]).tolist()) == list(range(100))
    again = split_heldout(100, 0.1, seed=3)
    np.testing.assert_array_equal(heldout, again[1])
    assert not np.array_equal(heldout, split_heldout(100, 0.1, seed=4)[1])
    # Not simply the last 10%: challenge files are ordered by identity.
    assert heldout.max() - heldout.min() > 10


def test_heldout_split_needs_two_images() -> None:
    with pytest.raises(InputError, match="at least 2 clean images"):
        split_heldout(1, 0.1, seed=0)


@pytest.fixture(scope="module")
def pruned_twice(tiny: TinyBenchmark):
    """The same seeded repair run twice, plus the BadNet's weights before it."""
    badnet = load_model(tiny.badnet)
    clean = load_dataset(tiny.clean_validation)
    before = [w.copy() for w in badnet.model.get_weights()]
    settings = MagnitudePruningSettings(seed=7, **FAST)
    first = prune_by_magnitude(badnet, clean, settings, verbose=0)
    second = prune_by_magnitude(badnet, clean, settings, verbose=0)
    return badnet, before, first, second


def test_every_dense_layer_reaches_the_final_sparsity(pruned_twice) -> None:
    _, _, result, _ = pruned_twice
    assert set(result.sparsity) == {"fc_1", "fc_2", "output"}
    for layer, sparsity in result.sparsity.items():
        assert sparsity == pytest.approx(0.7, abs=0.005), layer
    assert dense_sparsity(result.model) == result.sparsity
    conv_kernel = result.model.get_layer("conv_3").kernel.numpy()
    assert np.mean(conv_kernel == 0) < 0.01  # only Dense layers are pruned


def test_repair_reports_what_it_measured(pruned_twice, tiny: TinyBenchmark) -> None:
    _, _, result, _ = pruned_twice
    clean_count = len(load_dataset(tiny.clean_validation))
    assert result.heldout_images == round(clean_count * 0.1)
    assert result.train_images + result.heldout_images == clean_count
    assert result.fine_tuning_steps == int(np.ceil(result.train_images / 8))
    assert result.heldout_accuracy_before_pct == 100.0  # the tiny BadNet is perfect on clean data
    assert 0.0 <= result.heldout_accuracy_after_pct <= 100.0
    assert [layer.name for layer in result.model.layers if "prune" in layer.name] == []


def test_the_badnet_is_left_untouched(pruned_twice) -> None:
    badnet, before, _, _ = pruned_twice
    for original, now in zip(before, badnet.model.get_weights()):
        np.testing.assert_array_equal(original, now)


def test_the_same_seed_repeats_the_repair_exactly(pruned_twice) -> None:
    _, _, first, second = pruned_twice
    for a, b in zip(first.model.get_weights(), second.model.get_weights()):
        np.testing.assert_array_equal(a, b)


# --- Activation pruning ---------------------------------------------------------------------------


def _layer_output(model: tf_keras.Model, layer_name: str, x: np.ndarray) -> np.ndarray:
    """What `layer_name` outputs for images `x` (pixels 0..255) of a unit-scale model."""
    return tf_keras.Model(model.input, model.get_layer(layer_name).output).predict(x / 255.0, verbose=0)


def test_mean_activations_match_a_direct_computation(tiny: TinyBenchmark) -> None:
    badnet = load_model(tiny.badnet)
    x = load_dataset(tiny.clean_test).x[::7][:5]
    activations = mean_channel_activations(badnet.model, "conv_3", x, "unit")
    assert activations.shape == (60,)
    # conv_3 by hand from pool_2's output: 3x3 valid convolution, bias, ReLU, then the mean.
    pooled = _layer_output(badnet.model, "pool_2", x).astype(np.float64)
    kernel, bias = (w.astype(np.float64) for w in badnet.model.get_layer("conv_3").get_weights())
    windows = np.lib.stride_tricks.sliding_window_view(pooled, (3, 3), axis=(1, 2))  # N, H', W', C, 3, 3
    by_hand = np.maximum(np.einsum("nhwcij,ijcf->nhwf", windows, kernel) + bias, 0.0).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(activations, by_hand, rtol=1e-4, atol=1e-6)
    assert (activations >= 0).all() and activations.max() > 0
    # Batches are only how the work is split up.
    np.testing.assert_allclose(mean_channel_activations(badnet.model, "conv_3", x, "unit", batch_size=2),
                               activations, rtol=1e-6)


def test_pruning_order_is_increasing_and_stable() -> None:
    activations = np.array([0.5, 0.0, 2.0, 0.5, 0.0, 1.0])
    np.testing.assert_array_equal(pruning_order(activations), [1, 4, 0, 3, 5, 2])


def test_prune_channels_silences_exactly_those_channels(tiny: TinyBenchmark) -> None:
    badnet = load_model(tiny.badnet)
    before = [w.copy() for w in badnet.model.get_weights()]
    x = load_dataset(tiny.clean_test).x[:6]
    original_out = _layer_output(badnet.model, "conv_3", x)
    pruned_channels = sorted(np.argsort(original_out.mean(axis=(0, 1, 2)))[-3:].tolist())  # the busiest ones
    pruned = prune_channels(badnet.model, "conv_3", pruned_channels)
    pruned_out = _layer_output(pruned, "conv_3", x)
    kept = [c for c in range(60) if c not in pruned_channels]
    assert (original_out[..., pruned_channels] > 0).any(axis=(0, 1, 2)).all()
    assert (pruned_out[..., pruned_channels] == 0.0).all()
    np.testing.assert_allclose(pruned_out[..., kept], original_out[..., kept], rtol=1e-6, atol=1e-6)
    for original, now in zip(before, badnet.model.get_weights()):
        np.testing.assert_array_equal(original, now)
    assert pruned is not badnet.model


@pytest.mark.parametrize("layer_name, message", [
    ("conv_9", "layer 'conv_9' is not in the model (its Conv2D layers: conv_1, conv_2, conv_3, conv_4)"),
    ("fc_1", "layer 'fc_1' is a Dense, not a Conv2D layer (its Conv2D layers: conv_1, conv_2, conv_3, conv_4)"),
])
def test_only_conv_layers_can_be_pruned(tiny: TinyBenchmark, layer_name: str, message: str) -> None:
    badnet = load_model(tiny.badnet)
    x = load_dataset(tiny.clean_test).x[:2]
    clean = load_dataset(tiny.clean_test)
    for call in (
        lambda: mean_channel_activations(badnet.model, layer_name, x, "unit"),
        lambda: prune_channels(badnet.model, layer_name, [0]),
        lambda: pruning_sweep(badnet, layer_name, clean, {}),
    ):
        with pytest.raises(InputError) as error:
            call()
        assert str(error.value) == message


def test_bad_channels_and_steps_are_refused(tiny: TinyBenchmark) -> None:
    badnet = load_model(tiny.badnet)
    with pytest.raises(InputError, match="channel 60 is not in layer 'conv_3', which has channels 0..59"):
        prune_channels(badnet.model, "conv_3", [0, 60])
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


def test_held_channels_stay_exactly_zero_through_training(tiny: TinyBenchmark) -> None:
    from fineprune.pruning import HoldChannelsAtZero

    model = load_model(tiny.badnet).model
    clean = load_dataset(tiny.clean_validation)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(clean.x / 255.0, clean.y, epochs=2, batch_size=8, verbose=0,
              callbacks=[HoldChannelsAtZero("conv_3", [3, 7, 11])])
    kernel, bias = model.get_layer("conv_3").get_weights()
    assert not kernel[..., [3, 7, 11]].any() and not bias[[3, 7, 11]].any()
    assert np.count_nonzero(kernel[..., 0]) > 0


# --- Fine-Pruning and its baselines -------------------------------------------------------------------



@pytest.fixture(scope="module")
def badnet_and_clean(tiny: TinyBenchmark):
    return load_model(tiny.badnet), load_dataset(tiny.clean_validation)


def run(badnet_and_clean, **settings):
    badnet, clean = badnet_and_clean
    return fine_prune(badnet, clean, ActivationPruningSettings(epochs=1, batch_size=8, seed=3, **settings), verbose=0)


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
    result = run(badnet_and_clean, method="prune", max_accuracy_drop=4.0)
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
