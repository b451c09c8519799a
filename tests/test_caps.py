"""Tests for fineprune.defenses.caps: rebuilding a net with new layers changes nothing by itself and
shares no weights; a cap computes min(activation, cap) on convolutional and Dense outputs in a file
that loads anywhere; per-channel maxima are the maxima over images and positions."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TinyBenchmark
from fineprune.data import load_dataset
from fineprune.defenses.caps import cap_layer_names, channel_maxima, features_layer_name, insert_after, with_caps
from fineprune.models import layer_outputs, load_model, save_model


@pytest.fixture(scope="module")
def net_and_images(tiny: TinyBenchmark):
    return load_model(tiny.badnet), load_dataset(tiny.clean_test).x[:40]


def test_a_rebuilt_net_computes_the_same_and_shares_no_weights(net_and_images) -> None:
    badnet, x = net_and_images
    rebuilt = insert_after(badnet.model, {})
    np.testing.assert_allclose(rebuilt.predict(x / 255.0, verbose=0), badnet.model.predict(x / 255.0, verbose=0),
                               atol=1e-6)
    kernel = rebuilt.get_layer("conv_1").kernel
    kernel.assign(kernel * 0.0)
    assert np.abs(badnet.model.get_layer("conv_1").get_weights()[0]).max() > 0


def test_an_unknown_layer_is_refused(net_and_images) -> None:
    with pytest.raises(ValueError, match="no layer named conv_9"):
        insert_after(net_and_images[0].model, {"conv_9": lambda tensor: tensor})


def test_caps_compute_the_minimum_on_conv_and_dense_outputs_and_survive_a_file(net_and_images, tmp_path) -> None:
    badnet, x = net_and_images
    conv = layer_outputs(badnet.model, "conv_3", x, "unit")
    conv_cap = np.quantile(conv.reshape(-1, conv.shape[-1]), 0.7, axis=0)
    features = badnet.penultimate_features(x)
    feature_cap = np.quantile(features, 0.5, axis=0)
    features_layer = features_layer_name(badnet.model)
    capped = with_caps(badnet.model, {"conv_3": conv_cap, features_layer: feature_cap})
    np.testing.assert_allclose(layer_outputs(capped, cap_layer_names("conv_3")[1], x, "unit"),
                               np.minimum(conv, conv_cap), atol=1e-4)
    save_model(capped, tmp_path / "capped.h5", {"input_scale": "unit"})
    loaded = load_model(tmp_path / "capped.h5")
    capped_features = loaded.penultimate_features(x)
    assert np.all(capped_features <= feature_cap + 1e-5)
    assert not np.allclose(capped_features, np.minimum(features, feature_cap), atol=1e-3)  # conv_3's cap acts too
    np.testing.assert_allclose(loaded.model.predict(x / 255.0, verbose=0), capped.predict(x / 255.0, verbose=0),
                               atol=1e-6)


def test_a_cap_of_the_wrong_width_is_refused(net_and_images) -> None:
    with pytest.raises(ValueError, match="conv_3.*channels"):
        with_caps(net_and_images[0].model, {"conv_3": np.ones(3)})


def test_channel_maxima_are_over_images_and_positions(net_and_images) -> None:
    badnet, x = net_and_images
    found = channel_maxima(badnet.model, ["conv_2", features_layer_name(badnet.model)], x, "unit", batch_size=7)
    conv = layer_outputs(badnet.model, "conv_2", x, "unit")
    np.testing.assert_allclose(found["conv_2"], conv.max(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(found[features_layer_name(badnet.model)], badnet.penultimate_features(x).max(axis=0), atol=1e-6,
                               rtol=1e-5)
