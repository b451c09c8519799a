"""Tests for fineprune.defenses.channels: mean activations, the pruning order, removing channels
and holding them at zero while a net trains."""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras

from conftest import TinyBenchmark
from fineprune.data import load_dataset
from fineprune.defenses.channels import HoldChannelsAtZero, mean_channel_activations, prune_channels, pruning_order
from fineprune.errors import InputError
from fineprune import models
from fineprune.models import load_model


def _layer_output(model: tf_keras.Model, layer_name: str, x: np.ndarray) -> np.ndarray:
    """What `layer_name` outputs for images `x` (pixels 0..255) of a unit-scale model."""
    return tf_keras.Model(model.input, model.get_layer(layer_name).output).predict(x / 255.0, verbose=0)

def test_mean_activations_match_a_direct_computation(tiny: TinyBenchmark, monkeypatch: pytest.MonkeyPatch) -> None:
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
    monkeypatch.setattr(models, "PREDICT_BATCH", 2)
    np.testing.assert_allclose(mean_channel_activations(badnet.model, "conv_3", x, "unit"), activations, rtol=1e-6)

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
    for call in (
        lambda: mean_channel_activations(badnet.model, layer_name, x, "unit"),
        lambda: prune_channels(badnet.model, layer_name, [0]),
    ):
        with pytest.raises(InputError) as error:
            call()
        assert str(error.value) == message


def test_channels_outside_the_layer_are_refused(tiny: TinyBenchmark) -> None:
    badnet = load_model(tiny.badnet)
    with pytest.raises(InputError, match="channel 60 is not in layer 'conv_3', which has channels 0..59"):
        prune_channels(badnet.model, "conv_3", [0, 60])


def test_held_channels_stay_exactly_zero_through_training(tiny: TinyBenchmark) -> None:
    model = load_model(tiny.badnet).model
    clean = load_dataset(tiny.clean_validation)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(clean.x / 255.0, clean.y, epochs=2, batch_size=8, verbose=0,
              callbacks=[HoldChannelsAtZero("conv_3", [3, 7, 11])])
    kernel, bias = model.get_layer("conv_3").get_weights()
    assert not kernel[..., [3, 7, 11]].any() and not bias[[3, 7, 11]].any()
    assert np.count_nonzero(kernel[..., 0]) > 0
